"""netlab-host-local: IPAM from address ranges, with allocations in files under `dataDir`.

All the logic is `netlab.cni.hostlocal` (shared with the in-process delegate path); this
class maps the CNI commands onto it. IPAM plugins never touch interfaces: the calling plugin
applies the addresses and routes of the result.
"""

from __future__ import annotations

from netlab.cni import hostlocal
from netlab.cni.skel import CmdArgs
from netlab.cni.types import (
    INTERNAL,
    INVALID_NETWORK_CONFIG,
    PLUGIN_NOT_AVAILABLE,
    SUPPORTED_VERSIONS,
    CniError,
    Result,
)


class HostLocalPlugin:
    name = "host-local"
    supported_versions = SUPPORTED_VERSIONS

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns  # unused: host-local only touches files

    def add(self, a: CmdArgs) -> Result:
        conf = hostlocal.parse_ipam_config(a.config, a.cni_args())
        ips = hostlocal.allocate(conf, a.container_id, a.ifname)
        return Result(cni_version=a.cni_version, ips=ips, routes=list(conf.routes), dns=conf.dns)

    def delete(self, a: CmdArgs) -> None:
        conf = hostlocal.parse_ipam_config(a.config, a.cni_args())
        hostlocal.release(conf, a.container_id, a.ifname)

    def check(self, a: CmdArgs) -> None:
        conf = hostlocal.parse_ipam_config(a.config, a.cni_args())
        if not hostlocal.held(conf, a.container_id, a.ifname):
            raise CniError(
                INTERNAL, f"host-local: Failed to find address added by container {a.container_id}"
            )

    def gc(self, a: CmdArgs) -> None:
        conf = hostlocal.parse_ipam_config(a.config)
        hostlocal.collect_garbage(conf, valid_attachments(a))

    def status(self, a: CmdArgs) -> None:
        conf = hostlocal.parse_ipam_config(a.config)
        for index, free in enumerate(hostlocal.free_counts(conf)):
            if free <= 0:
                raise CniError(
                    PLUGIN_NOT_AVAILABLE,
                    f"no IP addresses available in range set {index}: {conf.range_sets[index]}",
                )


def valid_attachments(a: CmdArgs) -> set[tuple[str, str]]:
    """GC's `cni.dev/valid-attachments` as (containerID, ifname) pairs."""
    raw = a.config.get("cni.dev/valid-attachments") or []
    if not isinstance(raw, list) or not all(isinstance(x, dict) for x in raw):
        raise CniError(
            INVALID_NETWORK_CONFIG, "cni.dev/valid-attachments must be a list of {containerID, ifname}"
        )
    return {(str(x.get("containerID", "")), str(x.get("ifname", ""))) for x in raw}
