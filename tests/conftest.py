"""Fixtures shared by every test folder."""

from __future__ import annotations

from typing import Iterator

import pytest

from tests.controller_process import ControllerProcess

pytest_plugins = ["tests.conftest_moto"]


@pytest.fixture(scope="module")
def shared_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for a whole module of tests that do not disturb each other."""
    ctl = ControllerProcess(tmp_path_factory.mktemp("ctl") / "data")
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()
