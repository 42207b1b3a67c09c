"""The only code in netlab that talks to the kernel.

Everything else asks this package for namespaces, links, addresses, routes, neighbours,
sysctls and (later) packet-filter and load-balancer state. It decides nothing: callers say what
they want and the functions here make it so, idempotently.
"""

from netlab.kernel.commands import in_netns, popen_in_netns, run, run_process
from netlab.kernel.ethtool import get_offloads, set_offloads
from netlab.kernel.netns import (
    delete_netns,
    ensure_netns,
    list_netns,
    netns_exists,
    netns_inode,
    netns_path,
    netns_pids,
    run_in_netns,
    spawn_in_netns,
)
from netlab.kernel.rtnl import FdbEntry, Link, Neighbour, Route, Rtnl
from netlab.kernel.sysctl import get_sysctl, set_sysctl, set_sysctls

__all__ = [
    "FdbEntry",
    "Link",
    "Neighbour",
    "Route",
    "Rtnl",
    "delete_netns",
    "ensure_netns",
    "get_offloads",
    "get_sysctl",
    "in_netns",
    "list_netns",
    "netns_exists",
    "netns_inode",
    "netns_path",
    "netns_pids",
    "popen_in_netns",
    "run",
    "run_process",
    "run_in_netns",
    "set_offloads",
    "set_sysctl",
    "set_sysctls",
    "spawn_in_netns",
]
