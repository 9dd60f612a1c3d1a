#!/usr/bin/python3
"""Unpack wheels into a private directory: unpack-wheels.py WHEEL_DIR TARGET.

A wheel is a zip of the files an installer would put in site-packages (plus
*.dist-info); these carry no scripts or data, which is checked, so unpacking is
installing. Used only with the pkg.zoomd.vendor build profile.
"""

import pathlib
import sys
import zipfile

source, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheels = sorted(source.glob("*.whl"))
if not wheels:
    sys.exit(f"unpack-wheels: no wheels in {source} (packaging/build-deb.sh fetches them)")
target.mkdir(parents=True, exist_ok=True)
for wheel in wheels:
    with zipfile.ZipFile(wheel) as archive:
        for name in archive.namelist():
            if name.split("/", 1)[0].endswith(".data"):
                sys.exit(f"unpack-wheels: {wheel.name} has a .data directory: not supported")
        archive.extractall(target)
    print(f"unpack-wheels: {wheel.name}")
for path in target.rglob("*"):
    path.chmod(0o755 if path.is_dir() or path.suffix == ".so" else 0o644)
