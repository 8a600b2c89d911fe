"""hawser: a container runtime for Linux (images, containers, CRI)."""

__version__ = "0.1.0"
