from __future__ import annotations

from rich.table import Table

from netlab.cli import output


def test_mac_addresses_print_as_they_are():
    # rich would print ":cd:" as an emoji by default
    table = Table("VTEP MAC")
    table.add_row("e6:cd:70:9a:d4:55")
    for console in (output.out, output.err):
        with console.capture() as cap:
            console.print(table)
            console.print("ae:cd:ab:12:34:56")
        assert "e6:cd:70:9a:d4:55" in cap.get() and "ae:cd:ab:12:34:56" in cap.get()
