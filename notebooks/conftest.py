"""The notebooks are executed by the test suite (nbmake): whole worked examples, so `slow`."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.suffix == ".ipynb" and item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.slow)
