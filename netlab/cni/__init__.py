"""CNI for netlab: the spec's data shapes, the runtime side, the plugin skeleton and IPAM.

- `types`: versions, error codes and `CniError`, result objects (spec 1.0.0/1.1.0, reads older)
- `config`: network configuration lists (`.conflist`, legacy `.conf`) and per-plugin requests
- `runtime`: `CniRuntime`, what a container runtime (the sandbox runtime, the kubelet) calls
- `cache`: the libcni-shaped result cache (`cniCacheV1`)
- `skel`: the plugin side: environment and stdin parsing, version checks, error JSON
- `hostlocal`: the host-local allocator and its on-disk store
- `delegate`: how a plugin runs its IPAM delegate

This package imports nothing but the standard library at module level (the kernel layer is
imported only by the plugin implementations under `cni/`), so that a plugin executable can
start in a few milliseconds.
"""
