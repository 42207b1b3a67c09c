"""`netlab doctor`: the prerequisites table and its exit code."""

from __future__ import annotations

import click

from netlab.cli.output import out
from netlab.errors import PrerequisiteError
from netlab.layout import Layout


@click.command()
def doctor() -> None:
    """Check prerequisites and kernel features; exit non-zero when a required one is missing."""
    from rich.table import Table

    from netlab.lab import doctor as checks

    results = checks.run_checks(Layout.from_env())
    table = Table(title="netlab doctor", title_justify="left")
    for col in ("check", "result", "found", "fix"):
        table.add_column(col, overflow="fold")
    for c in results:
        if c.ok:
            result = "[green]ok[/green]"
        elif c.required:
            result = "[bold red]MISSING[/bold red]"
        else:
            result = "[yellow]missing (optional)[/yellow]"
        table.add_row(c.name, result, c.found, c.fix)
    out.print(table)
    missing = checks.required_missing(results)
    if missing:
        raise PrerequisiteError(
            f"{len(missing)} required prerequisite(s) missing: {', '.join(c.name for c in missing)}"
        )


COMMANDS = [doctor]
