"""`python -m netlab.cli` is `netlab` (for tests and environments without the console script)."""

from netlab.cli.main import main

main()
