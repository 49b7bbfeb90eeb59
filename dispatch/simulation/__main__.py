from dispatch.simulation.cli import main

raise SystemExit(main())
