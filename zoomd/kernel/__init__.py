"""Readers of kernel files: one module per source, each rooted at a directory.

Every reader takes a `Root` so that a tree captured from another host (or a fixture
tree in the tests) is read exactly like the live /proc and /sys.
"""
