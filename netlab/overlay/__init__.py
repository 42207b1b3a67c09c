"""flannel's role in the lab: subnet leases in etcd, the VXLAN and host-gw data planes, subnet.env.

- `config`: the network config (`<prefix>/config`): parsing, defaults, validation.
- `subnets`: subnet keys, lease values and choosing a free subnet (pure).
- `leases`: acquiring, renewing, watching and releasing leases through an etcd client.
- `subnetenv`: the `subnet.env` file the CNI plugin reads.
- `dataplane`: programming a node's namespace for its peers (VXLAN or host-gw).
- `daemon`: flanneld itself: lease, watch, program, renew, re-sync.
"""
