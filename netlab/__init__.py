"""netlab: real Kubernetes pod networking in the kernel, small enough to read."""

__version__ = "0.1.0"
