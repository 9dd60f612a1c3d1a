"""Test configuration: make the fixture-tree directory easy to reach."""

from __future__ import annotations

import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
TREES_DIR = os.path.join(TESTS_DIR, "fixtures", "trees")
sys.path.insert(0, TESTS_DIR)


@pytest.fixture
def tree_path():
    """Return the path of a named fixture tree under tests/fixtures/trees."""

    def _path(name: str) -> str:
        path = os.path.join(TREES_DIR, name)
        assert os.path.isdir(path), f"fixture tree {name} missing"
        return path

    return _path
