"""Man pages, bash completion and --help: generated from the parser and the schema,
committed under packaging/, and checked here to be what the code produces now."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoomd import __version__
from zoomd.cli import build_parser, main
from zoomd.cli.completion import render_bash
from zoomd.cli.manpage import (
    parse_toml_docs,
    render,
    schema_sections,
    shipped_toml_text,
    undocumented_keys,
)
from zoomd.cli.parser_walk import options, subcommands
from zoomd.config.runtime import Config
from zoomd.config.units import Size

REPO = Path(__file__).resolve().parent.parent
GENERATED = {
    "packaging/man/zoomd.8": lambda: render("8", build_parser()),
    "packaging/man/zoomd.toml.5": lambda: render("5"),
    "packaging/completion/zoomd.bash": lambda: render_bash(build_parser()),
}
REGENERATE = "run packaging/regenerate.sh (PYTHON=your venv's python) and commit the result"


@pytest.mark.parametrize("path", sorted(GENERATED))
def test_committed_copy_is_what_the_code_generates(path: str) -> None:
    committed = (REPO / path).read_bytes()
    assert committed == GENERATED[path]().encode(), f"{path} is stale: {REGENERATE}"


def test_generation_is_deterministic() -> None:
    for make in GENERATED.values():
        assert make() == make()


def test_regenerate_script_writes_the_same_bytes(tmp_path: Path) -> None:
    """packaging/regenerate.sh, run on a copy, reproduces the committed files."""
    copy = tmp_path / "packaging"
    shutil.copytree(REPO / "packaging", copy, ignore=shutil.ignore_patterns("debian"))
    shutil.copytree(REPO / "zoomd", tmp_path / "zoomd")
    for path in GENERATED:
        (tmp_path / path).write_text("stale\n")
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(["bash", str(copy / "regenerate.sh")], check=True, env=env,
                   capture_output=True, timeout=120)
    for path in GENERATED:
        assert (tmp_path / path).read_bytes() == (REPO / path).read_bytes(), path


def test_every_schema_key_is_documented_in_the_shipped_toml() -> None:
    missing = undocumented_keys()
    assert missing == [], f"document these keys in zoomd/data/zoomd.toml: {missing}"


def _schema_paths(model: type = Config, prefix: str = "") -> set[str]:
    """Every key path of the schema, walked independently of zoomd.cli.manpage."""
    import dataclasses
    import typing

    paths: set[str] = set()
    hints = typing.get_type_hints(model)
    for info in dataclasses.fields(model):
        name = "for" if info.name == "for_" else info.name
        key = f"{prefix}.{name}" if prefix else name
        ann = hints[info.name]
        args = [a for a in typing.get_args(ann) if isinstance(a, type)] or [ann]
        sub = next((a for a in args if dataclasses.is_dataclass(a) and a is not Size), None)
        if sub is not None:
            paths |= _schema_paths(sub, key)
        else:
            paths.add(key)
    return paths


def test_toml5_lists_every_key_with_its_default() -> None:
    docs = parse_toml_docs(shipped_toml_text())
    sections = schema_sections(docs)
    listed = {f"{p}.{k.name}" for s in sections for p in s.paths for k in s.keys}
    assert listed == _schema_paths()
    page = render("5")
    for section in sections:
        for key in section.keys:
            assert f"\\fB{key.name.replace('-', chr(92) + '-')}\\fR" in page, key.path
    # a few defaults, as an operator writes them
    assert 'Default: "1s".' in page  # daemon.interval
    assert "Default: \\-1000." in page  # daemon.oom_score_adj
    assert 'Default: ["refaults", "memory"].' in page.replace("\\-", "-")
    assert "Default: required." in page  # policy.name


def test_zoomd8_documents_every_subcommand_and_option() -> None:
    page = render("8", build_parser()).replace("\\-", "-").replace("\\fB", "").replace("\\fR", "")
    parser = build_parser()
    subs = subcommands(parser)
    assert {name for name, _, _ in subs} >= {"status", "check", "run"}
    for name, _, sub in subs:
        assert f".SS zoomd {name}" in page
        for action in options(sub):
            for flag in action.option_strings:
                assert flag in page, (name, flag)
    assert "manpage" not in {name for name, _, _ in subs}  # hidden


def test_exit_status_is_documented() -> None:
    page = render("8", build_parser())
    section = page.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for code in ("0", "2", "130"):
        assert f".TP\n\\fB{code}\\fR\n" in section


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("path", ["packaging/man/zoomd.8", "packaging/man/zoomd.toml.5"])
def test_man_page_renders_without_warnings(path: str) -> None:
    result = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", str(REPO / path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr


def test_help_for_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    top = capsys.readouterr().out
    assert "Exit status: 0" in top and "manpage" not in top
    for name, _, sub in subcommands(build_parser()):
        with pytest.raises(SystemExit) as exc:
            main([name, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        for action in options(sub):
            for flag in action.option_strings:
                assert flag in out, (name, flag)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"zoomd {__version__}"


def test_manpage_command_prints_the_pages(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["manpage", "8"]) == 0
    assert capsys.readouterr().out == render("8", build_parser())
    with pytest.raises(SystemExit) as exc:
        main(["manpage", "3"])
    assert exc.value.code == 2


BASH = shutil.which("bash")


def complete(words: list[str]) -> list[str]:
    """What the committed completion offers after `words` (the last is being typed)."""
    assert BASH is not None
    script = (f"source {REPO / 'packaging/completion/zoomd.bash'}\n"
              "COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); _zoomd\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run([BASH, "-c", script, "bash", *words], capture_output=True,
                            text=True, timeout=30, check=True)
    return [w for w in result.stdout.splitlines() if w]


@pytest.mark.skipif(BASH is None, reason="bash is not installed")
def test_bash_completion_offers_every_subcommand_and_option() -> None:
    parser = build_parser()
    subs = subcommands(parser)
    assert set(complete(["zoomd", ""])) >= {name for name, _, _ in subs} | {"--version"}
    assert complete(["zoomd", "st"]) == ["status"]
    for name, _, sub in subs:
        offered = set(complete(["zoomd", name, "-"]))
        for action in options(sub):
            assert set(action.option_strings) <= offered, (name, action.option_strings)
    assert complete(["zoomd", "status", "--mode", "r"]) == ["ram-backed"]
    assert complete(["zoomd", "run", "--dry-run", "--c"]) == ["--config"]
    assert "--root" not in complete(["zoomd", "run", "--"])  # hidden option
    # FILE completes file names
    files = complete(["zoomd", "check", "--config", str(REPO / "packaging/regen")])
    assert files == [str(REPO / "packaging/regenerate.sh")]
