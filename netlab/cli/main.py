"""The `netlab` click group and its error boundary.

Library code raises `netlab.errors.NetlabError`; here it becomes one line on stderr and a
non-zero exit. Anything else is a bug: it also gets one line, plus the traceback in a file, so
that bad input never shows a user a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback

import click

from netlab.errors import NetlabError

EXIT_ERROR = 1
EXIT_BUG = 70


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netlab-kube", prog_name="netlab")
def cli() -> None:
    """A container networking lab: real pod networks, services and a small control plane."""


def _register() -> None:
    # each verb lives in its own module; importing it here is what makes it part of `netlab`
    from netlab.cli import apiserver, cni, control, doctor, etcd, flanneld, lab, proxy, sandbox

    for module in (lab, sandbox, doctor, etcd, flanneld, apiserver, control, proxy, cni):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def _quiet_library_logs() -> None:
    """Library warnings (a CNI DEL failing while an error is unwound, say) are details of an
    error the command reports in one line; without a configured handler they would reach
    stderr through logging's last resort. NETLAB_DEBUG=1 shows them. Daemon verbs that set up
    their own logging are unaffected."""
    if os.environ.get("NETLAB_DEBUG"):
        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
    else:
        logging.lastResort = logging.NullHandler()


def main() -> None:
    _quiet_library_logs()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(EXIT_ERROR)
    except click.UsageError as e:
        # one line, like every other error; the usage text is one `-h` away
        where = e.ctx.command_path if e.ctx else "netlab"
        click.echo(f"error: {e.format_message().rstrip('.')} (see `{where} -h`)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except NetlabError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(EXIT_ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if os.environ.get("NETLAB_DEBUG"):
            raise
        fd, path = tempfile.mkstemp(prefix="netlab-crash-", suffix=".txt")
        with os.fdopen(fd, "w") as f:
            traceback.print_exc(file=f)
        click.echo(f"internal error: {type(e).__name__}: {e} (traceback in {path})", err=True)
        sys.exit(EXIT_BUG)

