"""The `netlab` command line: click commands, and the only place that exits the process."""
