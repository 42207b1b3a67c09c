"""Packet-walk scenarios that show every hop of a Kubernetes packet path."""
