"""The registry of proxy modes: a mode name and a node in, a `Mode` object out."""

from __future__ import annotations

from netlab.errors import ConfigError, PrerequisiteError
from proxy.mode import MODES, Mode, NodeInfo

AVAILABLE = ("userspace", "iptables")


def check_available(name: str) -> None:
    if name not in MODES:
        raise ConfigError(f"unknown proxy mode {name!r}: use one of {', '.join(MODES)}")
    if name not in AVAILABLE:
        raise PrerequisiteError(f"proxy mode {name} is not available yet (available: {', '.join(AVAILABLE)})")


def make_mode(name: str, netns: str, node: NodeInfo, iptables_backend: str | None = None) -> Mode:
    if name == "iptables":
        from netlab.kernel.iptables import DEFAULT_BACKEND
        from proxy.iptables.mode import IptablesMode

        return IptablesMode(netns, node, iptables_backend or DEFAULT_BACKEND)
    if name == "userspace":
        from proxy.userspace.mode import UserspaceMode

        return UserspaceMode(netns, node, iptables_backend=iptables_backend)
    check_available(name)
    raise AssertionError(name)
