"""Command-line numbers (issue 15 item 6): NaN, negatives, zero where it means nothing,
and numbers too large are one line naming the option and its range, exit 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from zoomd.cli import argtypes, build_parser


@pytest.mark.parametrize(("args", "option", "words"), [
    (["run", "--duration", "nan"], "--duration", "expected a duration"),
    (["run", "--duration", "-1"], "--duration", "expected a duration"),
    (["run", "--duration", "99999999999h"], "--duration", "between 0s and 8760h"),
    (["run", "--scope", "/../unified"], "--scope", "components"),
    (["check", "--scope", "/a//b"], "--scope", "components"),
    (["record", "-o", "T", "--keep", "-1"], "--keep", "from 0 to 1000"),
    (["record", "-o", "T", "--subtree-every", "0"], "--subtree-every", "from 1 to 1000000"),
    (["record", "-o", "T", "--max-size", "0"], "--max-size", "from 64K to 1T"),
    (["record", "-o", "T", "--interval", "0"], "--interval", "between 50ms and 10min"),
    (["record", "-o", "T", "--interval", "nan"], "--interval", "expected a duration"),
    (["record", "-o", "T", "--duration", "-5"], "--duration", "expected a duration"),
    (["record", "-o", "T", "--page-size", "0"], "--page-size", "from 4096"),
    (["record", "-o", "T", "--scope", "/x/."], "--scope", "components"),
    (["status", "--sample", "nan"], "--sample", "expected a duration"),
    (["status", "--sample", "1e300"], "--sample", "expected a duration"),
    (["status", "--sample", "2h"], "--sample", "between 0s and 10min"),
    (["status", "--page-size", "0"], "--page-size", "from 4096"),
    (["status", "--page-size", "5000"], "--page-size", "power of two"),
    (["status", "--page-size", "١٢"], "--page-size", "whole number"),
    (["status", "--top", "0"], "--top", "from 1 to 10000"),
    (["replay", "T", "--stall-threshold", "nan"], "--stall-threshold", "percentage"),
    (["replay", "T", "--stall-threshold", "-3"], "--stall-threshold", "percentage"),
])
def test_cli_numbers_refused_with_one_line(args, option, words) -> None:
    proc = subprocess.run([sys.executable, "-m", "zoomd", *args], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"argument {option}: " in proc.stderr and words in proc.stderr, proc.stderr


@pytest.mark.parametrize(("args", "attr", "value"), [
    (["run", "--duration", "2.5"], "duration", 2.5),
    (["run", "--duration", "0"], "duration", 0.0),
    (["run", "--duration", "2min"], "duration", 120.0),
    (["record", "-o", "T", "--keep", "0"], "keep", 0),
    (["record", "-o", "T", "--max-size", "1M"], "max_size", 1 << 20),
    (["record", "-o", "T", "--interval", "200ms"], "interval", 0.2),
    (["status", "--sample", "0"], "sample", 0.0),
    (["status", "--page-size", "65536"], "page_size", 65536),
    (["replay", "T", "--stall-threshold", "12.5"], "stall_threshold", 12.5),
    (["run", "--scope", "/my-lab/"], "scope", "/my-lab/"),
])
def test_cli_numbers_in_range_parse(args, attr, value) -> None:
    assert getattr(build_parser().parse_args(args), attr) == value


def test_usage_errors_are_one_line() -> None:
    proc = subprocess.run([sys.executable, "-m", "zoomd", "status", "--no-such-option"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


def test_count_refuses_what_int_would_take() -> None:
    parse = argtypes.count(0, 10)
    for text in ("1_0", "+5", "٣", "1e1", "", "99999999999999999999999"):
        with pytest.raises(Exception, match="whole number"):
            parse(text)
