"""Prometheus metrics of the daemon: text exposition written here (no client library),
served on an optional loopback HTTP endpoint or written as a node_exporter textfile."""
