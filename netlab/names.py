"""How netlab names the kernel objects it creates, in one place.

Everything netlab creates where it could meet objects it does not own carries the prefix
`nl-` (a lab may narrow it to `nl-<id>-`, which is how tests keep their labs apart); cleanup
matches on that prefix and nothing else. Inside namespaces that netlab itself created, objects
keep the names a Kubernetes node would show (`cni0`, `flannel.1`, `eth0`, `veth<hex>`), because
seeing those names is the point of the lab.

Kernel names have hard limits: interface names are at most 15 bytes, iptables chain names at
most 28. When a readable name would not fit, it is replaced by a stable hash: the prefix, then
as many characters of base32(sha256(key)) as fit. The same key always gives the same name, so
an object can be found again without a ledger.
"""

from __future__ import annotations

import base64
import hashlib
import re

from netlab.errors import ConfigError

ROOT_PREFIX = "nl-"
IFNAME_MAX = 15
CHAIN_MAX = 28

_PREFIX_RE = re.compile(r"^nl-(?:[a-z0-9]{1,12}-)?$")
_SIMPLE_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def check_prefix(prefix: str) -> str:
    """A lab prefix is `nl-` or `nl-<id>-`; anything else would escape cleanup's match."""
    if not _PREFIX_RE.match(prefix):
        raise ConfigError(f"invalid name prefix {prefix!r}: expected 'nl-' or 'nl-<id>-'")
    return prefix


def check_simple_name(kind: str, name: str) -> str:
    """Node and sandbox names: DNS-1123 labels, so they are safe in paths and netns names."""
    if not _SIMPLE_NAME_RE.match(name):
        raise ConfigError(
            f"invalid {kind} name {name!r}: use lower-case letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return name


def digest(key: str, length: int) -> str:
    """`length` lower-case base32 characters of sha256(key): stable and name-safe."""
    raw = base64.b32encode(hashlib.sha256(key.encode()).digest()).decode().lower()
    return raw[:length]


def hashed_name(prefix: str, key: str, limit: int) -> str:
    """`prefix` followed by a hash of `key`, exactly `limit` characters long."""
    room = limit - len(prefix)
    if room < 4:
        raise ValueError(f"prefix {prefix!r} leaves no room for a hash within {limit}")
    return prefix + digest(key, room)


def fit_ifname(preferred: str, key: str, prefix: str = ROOT_PREFIX) -> str:
    """`preferred` when it fits an interface name, else a stable hashed name."""
    if len(preferred) <= IFNAME_MAX:
        return preferred
    return hashed_name(prefix, key, IFNAME_MAX)
