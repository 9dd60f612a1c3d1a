"""Drop-in replacement for systemd-oomd: oomd.conf, ManagedOOM varlink, xattrs, oom1 D-Bus.

Facts about systemd's protocol were checked against systemd's sources (src/oom/,
src/core/core-varlink.c, src/basic/) and the systemd 252 binaries of Debian 12;
the code here is written from those facts, not copied.
"""
