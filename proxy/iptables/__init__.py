"""iptables mode: kube-proxy's chain layout, written with one iptables-restore per sync."""
