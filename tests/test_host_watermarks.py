"""The host's min watermarks are read once and kept, until refresh_watermarks() (the
daemon's SIGHUP): explicit state, not a cache that lives forever unseen."""

from __future__ import annotations

import shutil
from pathlib import Path

from zoomd.host import HostReader
from zoomd.kernel.root import Root

TREE = Path(__file__).resolve().parent / "fixtures" / "trees" / "zram-only-6.18"


def test_watermarks_are_kept_until_refreshed(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TREE, tree, symlinks=True)
    reader = HostReader(Root(str(tree)), page_size=4096)
    first = reader.sample(1.0).min_free_bytes
    zoneinfo = tree / "proc" / "zoneinfo"
    text = zoneinfo.read_text()
    lines = [line for line in text.splitlines() if line.split()[:1] == ["min"]]
    assert lines, "the fixture's zoneinfo has min watermarks"
    doubled = "\n".join(
        line.replace(line.split()[1], str(2 * int(line.split()[1])))
        if line.split()[:1] == ["min"] else line
        for line in text.splitlines()) + "\n"
    zoneinfo.write_text(doubled)
    assert reader.sample(2.0).min_free_bytes == first  # kept
    reader.refresh_watermarks()
    assert reader.sample(3.0).min_free_bytes == 2 * first
