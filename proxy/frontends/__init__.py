"""Where a proxy learns about Services and EndpointSlices: the apiserver, or a YAML file."""
