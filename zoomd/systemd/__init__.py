"""Drop-in replacement for systemd-oomd: oomd.conf, ManagedOOM varlink, xattrs, oom1 D-Bus,
and systemd 260's prekill hooks (prekill.py) and 261's OOM rules (oomrules.py, rules.py).

Facts about systemd's protocol were checked against systemd's sources (src/oom/,
src/core/core-varlink.c, src/basic/, man/io.systemd.*.xml) and the systemd 252 binaries
of Debian 12; the code here is written from those facts, not copied. 260 and 261 were
read from source only (no guest runs them): see each module's docstring for the files
and commits.
"""
