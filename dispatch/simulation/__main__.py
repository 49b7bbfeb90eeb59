from dispatch.simulation.command import main

raise SystemExit(main())
