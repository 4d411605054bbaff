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
