"""packaging/debian: the .deb builds with dh + pybuild, installs into a scratch root
and runs from it (packaging/build-deb.sh does all three and says so), and the
package's metadata agrees with the project's."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from zoomd import __version__

REPO = Path(__file__).resolve().parent.parent
DEBIAN = REPO / "packaging" / "debian"


def test_changelog_version_is_the_package_version() -> None:
    first = (DEBIAN / "changelog").read_text().splitlines()[0]
    match = re.match(r"zoomd \(([^)]+)\) ", first)
    assert match and match.group(1).split("-")[0] == __version__
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__


def test_package_ships_what_the_issue_asks() -> None:
    install = (DEBIAN / "zoomd.install").read_text()
    assert "zoomd/data/zoomd.toml etc/zoomd/" in install  # conffile under /etc
    assert "policies/*.toml usr/share/zoomd/policies/" in install
    manpages = (DEBIAN / "zoomd.manpages").read_text().split()
    assert manpages == ["packaging/man/zoomd.8", "packaging/man/zoomd.toml.5"]
    assert (DEBIAN / "zoomd.service").read_text() == \
        (REPO / "packaging/systemd/zoomd.service").read_text()
    control = (DEBIAN / "control").read_text()
    assert "dh-python" in control and "pybuild-plugin-pyproject" in control
    # every runtime dependency of pyproject.toml is a Depends (pydantic by profile)
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for requirement in pyproject["project"]["dependencies"]:
        name = re.split(r"[<>=;\s]", requirement, maxsplit=1)[0].lower()
        if name in ("tomli",):  # only before Python 3.11
            continue
        where = (DEBIAN / "rules").read_text() if name == "pydantic" else control
        assert f"python3-{name}" in where, name


@pytest.mark.slow
def test_deb_builds_installs_and_runs(tmp_path: Path) -> None:
    if shutil.which("dpkg-buildpackage") is None:
        pytest.skip("dpkg-buildpackage is missing (apt-get install dpkg-dev)")
    if os.geteuid() != 0:
        pytest.skip("building needs root (apt-get of build dependencies, mount)")
    result = subprocess.run(["bash", str(REPO / "packaging/build-deb.sh"), str(tmp_path)],
                            capture_output=True, text=True, timeout=600, check=False)
    output = result.stdout + result.stderr
    if result.returncode == 77:
        pytest.skip(output.strip().splitlines()[-1])
    assert result.returncode == 0, output[-6000:]
    assert "zoomd --version:\nzoomd " + __version__ in result.stderr
    assert "/etc/zoomd/zoomd.toml" in result.stderr.split("--- conffiles:", 1)[1]
    assert "every shipped policy passes zoomd check" in result.stderr
    summary = re.search(r"zoomd-deb: path=(\S+) size_bytes=(\d+)", result.stdout)
    assert summary, output
    deb = Path(summary.group(1))
    assert deb.exists() and deb.stat().st_size == int(summary.group(2))
    print(result.stdout.strip())  # the measured size and times, shown with -rP / -s
