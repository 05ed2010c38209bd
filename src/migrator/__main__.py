"""``python -m migrator``: the ``migrator`` command (used to start local worker processes)."""

from migrator.cli.main import main

main()
