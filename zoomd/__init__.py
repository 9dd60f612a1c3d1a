"""zoomd: a userspace OOM policy for hosts whose swap is RAM-backed (zram)."""

__version__ = "0.1.0"
