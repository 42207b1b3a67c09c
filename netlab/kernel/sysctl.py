"""Per-namespace sysctls.

Everything under /proc/sys/net belongs to the network namespace of the task that opens the
file, so reads and writes run on a thread joined to the target namespace (see `netns`). The
host's own namespace is never a target of the lab; callers name a namespace explicitly, and
`None` means "the namespace this process already runs in" (a CNI plugin in its node).
"""

from __future__ import annotations

from collections.abc import Mapping

from netlab.errors import KernelError, NotFound
from netlab.kernel.netns import run_in_netns


def _path(key: str) -> str:
    """`net.ipv4.ip_forward` or, for names with dots, `net/ipv4/conf/flannel.1/rp_filter`."""
    return "/proc/sys/" + (key if "/" in key else key.replace(".", "/"))


def get_sysctl(netns: str | None, key: str) -> str:
    def read() -> str:
        try:
            with open(_path(key)) as f:
                return f.read().strip()
        except FileNotFoundError:
            raise NotFound(f"sysctl {key} does not exist") from None

    return run_in_netns(netns, read)


def set_sysctl(netns: str | None, key: str, value: str | int) -> bool:
    """Write `value` unless it is already set. Returns True when it changed something."""
    want = str(value)

    def write() -> bool:
        path = _path(key)
        try:
            with open(path) as f:
                if f.read().strip() == want:
                    return False
            with open(path, "w") as f:
                f.write(want)
        except FileNotFoundError:
            raise NotFound(f"sysctl {key} does not exist") from None
        except OSError as e:
            raise KernelError(f"cannot set {key}={want}: {e.strerror}", e.errno) from e
        return True

    return run_in_netns(netns, write)


def write_sysctls(values: Mapping[str, str | int], missing_ok: bool = False) -> None:
    """Write sysctls in the calling thread's namespace (for code already running in the
    target, such as `Rtnl` opening its socket there); `missing_ok` skips absent keys."""
    for key, value in values.items():
        path = _path(key)
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except FileNotFoundError:
            if not missing_ok:
                raise NotFound(f"sysctl {key} does not exist") from None
        except OSError as e:
            raise KernelError(f"cannot set {key}={value}: {e.strerror}", e.errno) from e


def set_sysctls(netns: str | None, values: Mapping[str, str | int], missing_ok: bool = False) -> None:
    """Write several sysctls with one trip into the namespace; `missing_ok` skips absent keys."""
    run_in_netns(netns, lambda: write_sysctls(values, missing_ok))
