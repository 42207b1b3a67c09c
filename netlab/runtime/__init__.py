"""The sandbox runtime: pods as pause-process sandboxes wired by CNI (what crictl would drive).

- `pause`: the pause program (stdlib only) that holds a pod's namespaces
- `sandbox`: create, list, remove and enter sandboxes; records under the lab's run directory
- `network`: the pod network of a node through `netlab.cni.CniRuntime` (loopback + default)
- `containers` and `shim`: host programs run as containers inside a sandbox (own PID and mount
  namespaces, CRI logs, exit status), outliving whoever started them
- `cgroups`: the lab's cgroup tree, where containers are accounted and limited
"""
