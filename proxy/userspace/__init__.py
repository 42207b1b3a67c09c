"""userspace mode: kube-proxy's original design, relays in user space steered by portal rules."""
