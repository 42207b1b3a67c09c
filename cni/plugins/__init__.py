"""The implementations behind netlab's CNI plugin executables.

Each plugin is a class with `add`, `delete`, `check`, `gc` and `status` (see
`netlab.cni.skel.Plugin`), built for the namespace it acts in: `netns=None` means this
process's own namespace (a plugin process, which the runtime started in the node's
namespace); a path means that namespace (the node's CNI server, which may live elsewhere).
Plugins keep no state between calls, so one instance may serve concurrent calls.
"""

from __future__ import annotations

import importlib

from netlab.cni.skel import Plugin

# launcher name -> (module, class)
PLUGINS = {
    "bridge": ("cni.plugins.bridge", "BridgePlugin"),
    "host-local": ("cni.plugins.host_local", "HostLocalPlugin"),
    "loopback": ("cni.plugins.loopback", "LoopbackPlugin"),
    "flannel": ("cni.plugins.flannel", "FlannelPlugin"),
}


def make_plugin(name: str, netns: str | None) -> Plugin:
    module, cls = PLUGINS[name]
    plugin: Plugin = getattr(importlib.import_module(module), cls)(netns)
    return plugin
