"""The kubelet: a node's agent that runs the pods bound to it, on the sandbox runtime.

- `kubelet`: the Kubelet (pod informer, pod workers, exit watching, probes' handlers)
- `podworker`: one pod's sync: sandbox, CNI, init and app containers, restarts, deletion
- `node`: Node registration, conditions and the Lease heartbeat
- `runtime`: the node's view of `netlab.runtime` (pod names, log paths, the node's sockets)
- `images`: what program an image stands for (there is no registry in a lab)
- `envvars`: a container's environment and command line (service links, downward API)
- `podstatus`: phase, conditions and container statuses, from what runs
- `backoff`: the crash-loop back-off
- `probes`: liveness, readiness and startup probes
- `logs`: reading CRI logs for `kubectl logs`
- `remotecommand` and `server`: the HTTPS endpoint (logs, exec) the apiserver proxies to

The kubelet reaches the kernel only through `netlab.runtime` and by executing CNI plugins.
"""
