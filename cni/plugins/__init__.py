"""The implementations behind netlab's CNI plugin executables.

Each plugin is a class with `add`, `delete`, `check`, `gc` and `status` (see
`netlab.cni.skel.Plugin`), built for the namespace it acts in: `netns=None` means this
process's own namespace (a plugin process, which the runtime started in the node's
namespace); a path means that namespace (the node's CNI server, which may live elsewhere).
Plugins keep no state about containers between calls, so one instance may serve concurrent
calls: `make_plugin` hands out one instance per plugin and namespace, so that a delegate run
in-process (netlab-flannel's bridge) shares the per-thread netlink handles of the instance
serving direct calls.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

from netlab.cni.skel import Plugin

if TYPE_CHECKING:
    from netlab.cni.delegate import Delegates

# launcher name -> (module, class)
PLUGINS = {
    "bridge": ("cni.plugins.bridge", "BridgePlugin"),
    "host-local": ("cni.plugins.host_local", "HostLocalPlugin"),
    "loopback": ("cni.plugins.loopback", "LoopbackPlugin"),
    "flannel": ("cni.plugins.flannel", "FlannelPlugin"),
}


_instances: dict[tuple[str, str | None], Plugin] = {}
_lock = threading.RLock()


def make_plugin(name: str, netns: str | None) -> Plugin:
    """The plugin `name` acting in `netns`, made on first use."""
    with _lock:
        plugin = _instances.get((name, netns))
        if plugin is None:
            module, cls = PLUGINS[name]
            plugin = getattr(importlib.import_module(module), cls)(netns)
            _instances[(name, netns)] = plugin
        return plugin


def delegates(env: Mapping[str, str], netns: str | None) -> Delegates:
    """The delegates of a plugin acting in `netns`: netlab's own plugins run in-process (the
    same instances as direct calls), others are exec'd."""
    from netlab.cni.delegate import Delegates

    return Delegates(env, netns=netns, in_process=lambda key: make_plugin(key, netns))
