"""netlab-loopback: bring up `lo` in the pod, like the reference `loopback` plugin (v1.1.1).

`CNI_IFNAME` is ignored: this only ever acts on `lo`. ADD sets it up and checks it carries
only loopback addresses; with a `prevResult` it passes that through unchanged, otherwise it
reports `lo` and its addresses. DEL sets it down and succeeds when the namespace is gone.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from netlab.cni.skel import CmdArgs
from netlab.cni.types import INTERNAL, SUPPORTED_VERSIONS, CniError, Interface, IPConfig, Result
from netlab.errors import KernelError, NotFound
from netlab.kernel import Rtnl


class LoopbackPlugin:
    name = "loopback"
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns  # unused: all the work is in the pod's namespace

    def _addresses(self, r: Rtnl) -> list[str]:
        found = r.addresses("lo", socket.AF_INET)[:1] + r.addresses("lo", socket.AF_INET6)[:1]
        for cidr in r.addresses("lo", socket.AF_INET) + r.addresses("lo", socket.AF_INET6):
            if not ipaddress.ip_interface(cidr).ip.is_loopback:
                raise CniError(INTERNAL, f'loopback interface found with non-loopback address "{cidr}"')
        return found

    def add(self, a: CmdArgs) -> Result:
        with Rtnl(a.netns) as r:
            r.set_link("lo", up=True)
            addresses = self._addresses(r)
        prev = a.prev_result
        if prev is not None:
            return prev
        return Result(
            cni_version=a.cni_version,
            interfaces=[Interface("lo", "00:00:00:00:00:00", sandbox=a.netns)],
            ips=[IPConfig(cidr, interface=0) for cidr in addresses],
        )

    def delete(self, a: CmdArgs) -> None:
        if not a.netns:
            return
        try:
            with Rtnl(a.netns) as r:
                r.set_link("lo", up=False)
        except NotFound:
            pass  # the namespace is gone
        except KernelError as e:
            if e.errno != errno.EINVAL:
                raise

    def check(self, a: CmdArgs) -> None:
        with Rtnl(a.netns) as r:
            if not r.get_link("lo").up:
                raise CniError(INTERNAL, "loopback interface is down")
            self._addresses(r)

    def gc(self, a: CmdArgs) -> None:
        """Nothing to collect: the loopback device lives and dies with its namespace."""

    def status(self, a: CmdArgs) -> None:
        """Always ready."""
