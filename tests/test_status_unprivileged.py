"""`zoomd status` works without privileges on the live host (world-readable files only)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

NOBODY = 65534


def test_status_as_nobody() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("unprivileged test skipped: needs root and setpriv to become nobody")
    source = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    probe = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-c", "import pydantic, zoomd"],
        capture_output=True, text=True, cwd="/", check=False,
        env={"PYTHONPATH": source, "PATH": os.environ.get("PATH", "")})
    if probe.returncode != 0:
        pytest.skip("unprivileged test skipped: this Python or its packages are not "
                    f"readable by nobody ({probe.stderr.strip().splitlines()[-1:]})")
    proc = subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
         sys.executable, "-m", "zoomd", "status", "--json", "--sample", "0.2"],
        capture_output=True, text=True, cwd="/", check=False, timeout=60,
        env={"PYTHONPATH": source, "PATH": os.environ.get("PATH", "")})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["memory"]["total_bytes"] > 0
    assert data["reclaim"]["effective_available_bytes"] > 0
