"""Traces: what the readers saw on a host, recorded so that policies can be replayed on it.

A trace is JSON lines (optionally gzip): a header, then samples holding the raw text
of the kernel files zoomd reads (only what changed, plus periodic keyframes), and the
daemon's decision records. Replay materialises the files into a directory and runs
the real readers, model and engine on it with the trace's clock.
"""
