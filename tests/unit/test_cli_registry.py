"""Every verb a CLI module defines is reachable through the lazy registry, and nothing else."""

import importlib
import pkgutil

import netlab.cli
from netlab.cli.main import VERB_MODULES, cli


def test_registry_matches_the_modules():
    defined = {}
    for info in pkgutil.iter_modules(netlab.cli.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"netlab.cli.{info.name}")
        for command in getattr(module, "COMMANDS", []):
            defined[command.name] = info.name
    assert defined == VERB_MODULES


def test_every_verb_resolves():
    for name in VERB_MODULES:
        assert cli.get_command(None, name).name == name  # type: ignore[arg-type, union-attr]
