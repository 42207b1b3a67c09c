"""Shared terminal output for the CLI: one console for results, one for progress and notes.

Results (tables, a pod's IP) go to stdout so they can be piped; progress displays and notes go
to stderr, so `netlab up | tee` or `ip=$(netlab sandbox run ...)` capture only the result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

# no emoji codes: a MAC address such as e6:cd:70:... would print its ":cd:" as a disc
out = Console(highlight=False, emoji=False)
err = Console(stderr=True, highlight=False, emoji=False)


@contextmanager
def steps_display(title: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar on stderr; yields a `(done, total, what)` callback for library code.

    The bar appears with the first report, so a command that fails its checks before doing
    anything shows only its error.
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn(f"[bold]{title}[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    )
    task = bar.add_task("", total=None)
    started = False

    def report(done: int, total: int, what: str) -> None:
        nonlocal started
        if not started:
            bar.start()
            started = True
        bar.update(task, completed=done, total=total, description=what)

    try:
        yield report
    finally:
        if started:
            bar.stop()
