"""Fleet simulator: replay real demand through the production matching code in simulated time."""

from dispatch.simulation.command import add_simulate_command, run_simulate

__all__ = ["add_simulate_command", "run_simulate"]
