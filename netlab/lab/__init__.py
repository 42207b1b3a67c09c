"""The single-host lab: topology, node namespaces, the underlay, and the lab's processes."""
