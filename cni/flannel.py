"""The `netlab-flannel` executable (see cni/plugins/flannel.py for what it does).

Only an entry point: `cni.launch` decides whether the node's CNI server answers or the plugin
runs in this process, and keeps start-up free of heavy imports.
"""


def main() -> None:
    from cni.launch import run

    run("flannel")
