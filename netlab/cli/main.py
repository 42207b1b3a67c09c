"""The `netlab` click group and its error boundary.

Library code raises `netlab.errors.NetlabError`; here it becomes one line on stderr and a
non-zero exit. Anything else is a bug: it also gets one line, plus the traceback in a file, so
that bad input never shows a user a traceback.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tempfile
import traceback

import click

from netlab.errors import NetlabError

EXIT_ERROR = 1
EXIT_BUG = 70


# Which module defines each verb. Modules are imported only when their verb runs, so that
# `netlab exec` does not pay for the apiserver's or the proxy's imports (pyroute2 alone costs
# ~150 ms). tests/unit/test_cli_registry.py checks this table against the modules' COMMANDS.
VERB_MODULES = {
    "up": "lab",
    "down": "lab",
    "status": "lab",
    "clean": "lab",
    "doctor": "doctor",
    "sandbox": "sandbox",
    "exec": "sandbox",
    "etcd": "etcd",
    "flanneld": "flanneld",
    "apiserver": "apiserver",
    "scheduler": "control",
    "controller-manager": "control",
    "kube-proxy": "proxy",
    "proxy": "proxy",
    "cni-server": "cni",
    "cni": "cni",
    "kubelet": "kubelet",
    "agent": "agent",
}


class LazyGroup(click.Group):
    """A click group whose verbs are looked up in `VERB_MODULES` and imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(VERB_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = VERB_MODULES.get(cmd_name)
        if module is None:
            return None
        commands = importlib.import_module(f"netlab.cli.{module}").COMMANDS
        return next((c for c in commands if c.name == cmd_name), None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netlab-kube", prog_name="netlab")
def cli() -> None:
    """A container networking lab: real pod networks, services and a small control plane."""


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
