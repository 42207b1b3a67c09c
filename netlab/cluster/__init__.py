"""The control plane: API types, the etcd-backed store, the apiserver (and later the scheduler,
controllers and kubelet). Nothing here imports `netlab.kernel`."""
