"""The netlab CNI plugin executables: each parses its input, calls `netlab.cni`, prints a result."""
