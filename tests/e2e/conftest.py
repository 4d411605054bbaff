from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.controller_process import ControllerProcess


@pytest.fixture
def controller(tmp_path: Path) -> Iterator[ControllerProcess]:
    """A fresh controller per test (its own data dir and ports); everything it started is killed after."""
    ctl = ControllerProcess(tmp_path / "data")
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()


@pytest.fixture(scope="module")
def shared_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for a whole module of tests that do not disturb each other."""
    ctl = ControllerProcess(tmp_path_factory.mktemp("ctl") / "data")
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()
