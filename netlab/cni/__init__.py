"""CNI for netlab: the spec's data shapes, the runtime side, the plugin skeleton and IPAM.

- `types`: versions, error codes and `CniError`, result objects (spec 1.0.0/1.1.0, reads older)
- `config`: network configuration lists (`.conflist`, legacy `.conf`) and per-plugin requests
- `runtime`: `CniRuntime`, what a container runtime (the sandbox runtime, the kubelet) calls
- `cache`: the libcni-shaped result cache (`cniCacheV1`)
- `skel`: the plugin side: environment and stdin parsing, version checks, error JSON
- `hostlocal`: the host-local allocator and its on-disk store
- `delegate`: how a plugin runs its IPAM delegate

Apart from `runtime` (which enters the node's namespace through the kernel layer), these
modules import only the standard library, so the plugin side stays cheap to load; the
plugin executables themselves (`cni/launch.py`) load none of it unless they do the work.
"""
