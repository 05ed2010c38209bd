"""``python -m migrator.sim serve ...``: the simulator without the rest of the CLI."""

from migrator.cli.sim import sim

if __name__ == "__main__":
    sim(prog_name="python -m migrator.sim")
