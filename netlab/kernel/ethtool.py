"""Device offload features (`ethtool -k/-K`) in a namespace.

Offloads are the one device setting here without a netlink call that pyroute2 wraps, so the
standard tool runs inside the namespace through `commands.run`. flanneld uses it to turn off
transmit checksum offload on its VXLAN device, the documented workaround for the "bad UDP
checksum" drops seen with VXLAN on some virtual NICs and kernels.
"""

from __future__ import annotations

from netlab.kernel.commands import run

# ethtool -k prints "name: on", "name: off [fixed]", ...
_STATES = {"on": True, "off": False}


def get_offloads(netns: str | None, ifname: str) -> dict[str, bool]:
    out = run(netns, ["ethtool", "-k", ifname]).stdout
    features: dict[str, bool] = {}
    for line in out.splitlines()[1:]:
        name, _, rest = line.strip().partition(":")
        state = rest.split()[0] if rest.split() else ""
        if state in _STATES:
            features[name] = _STATES[state]
    return features


def set_offloads(netns: str | None, ifname: str, features: dict[str, bool]) -> bool:
    """Set offload features; returns True when one of them changed."""
    current = get_offloads(netns, ifname)
    changes = {k: v for k, v in features.items() if current.get(k) != v}
    if not changes:
        return False
    argv = ["ethtool", "-K", ifname]
    for k, v in changes.items():
        argv += [k, "on" if v else "off"]
    run(netns, argv)
    return True
