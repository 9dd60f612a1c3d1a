"""The wheel holds zoomd and nothing that sets up swap, zram or VMs: the labs
(zoomdlab.lab, zoomdlab.vmlab: mkswap, swapon, zram reset, qemu provisioning) stay
in the source checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _build_wheel(tmp_path: Path) -> Path:
    # Built from a copy of what the package is made of, plus the labs (to show they
    # are left out): not tests/, whose captured /sys trees hold symlink cycles.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("zoomd", "zoomdlab"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path / "out"
    base = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
            "--disable-pip-version-check", "-w", str(out), str(src)]
    result = subprocess.run(base, capture_output=True, text=True, timeout=300, check=False)
    if result.returncode != 0:  # no index to fetch setuptools from: this venv's own
        result = subprocess.run([*base, "--no-build-isolation"], capture_output=True,
                                text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("zoomd-*.whl")
    return wheel


def test_wheel_holds_no_lab_module(tmp_path: Path) -> None:
    shipped = zipfile.ZipFile(_build_wheel(tmp_path))
    names = shipped.namelist()
    modules = [n for n in names if n.endswith(".py")]
    assert "zoomd/cli.py" in modules or "zoomd/cli/__init__.py" in modules
    assert "zoomd/daemon/engine.py" in modules
    assert "zoomd/data/zoomd.toml" in names
    top = {n.split("/", 1)[0] for n in names}
    assert {t for t in top if not t.endswith((".dist-info", ".data"))} == {"zoomd"}
    lab = [n for n in modules if "lab/" in n or n.startswith("zoomdlab")]
    assert lab == []
    # nor any module that sets up swap or boots a VM: the daemon reads swap only
    for name in modules:
        source = shipped.read(name).decode()
        for tool in ('"mkswap"', '"swapon"', "qemu-system", "virtme-run", "virtme-ng"):
            assert tool not in source, (name, tool)
