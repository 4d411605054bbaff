"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

import pytest

from tests.controller_process import ControllerProcess
from tests.world import WORLD

pytest_plugins = ["tests.conftest_moto"]


def pytest_configure(config: pytest.Config) -> None:
    """Run the whole session in a network namespace of its own (tests/world.py), when root."""
    WORLD.enter()


def pytest_unconfigure(config: pytest.Config) -> None:
    WORLD.leave()


def _searchable(path: Path) -> Path:
    """o+x on path: an unprivileged user may pass through it by name (it still cannot list it)."""
    os.chmod(path, stat.S_IMODE(os.stat(path).st_mode) | stat.S_IXOTH)
    return path


@pytest.fixture(autouse=True, scope="session")
def _dataplane_user_can_reach_tmp(tmp_path_factory: pytest.TempPathFactory) -> None:
    """As root, V2Ray runs as the unprivileged data-plane user (agent/dataplane_user.py), which must pass
    through every directory above a node's state dir; pytest makes its temporary directories 0700."""
    if os.geteuid() != 0:
        return
    base = tmp_path_factory.getbasetemp()
    _searchable(base.parent)
    _searchable(base)
    mktemp = tmp_path_factory.mktemp
    tmp_path_factory.mktemp = lambda *args, **kwargs: _searchable(mktemp(*args, **kwargs))  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _tmp_path_reachable(request: pytest.FixtureRequest) -> None:
    """tmp_path too (see above), when the test uses it."""
    if os.geteuid() == 0 and "tmp_path" in request.fixturenames:
        path = request.getfixturevalue("tmp_path")
        _searchable(path.parent)
        _searchable(path)


class Internet:
    """The internet host of tests/world.py: where traffic through a subscriber's tunnel goes."""

    def url(self, size: int) -> str:
        return WORLD.url(size)


@pytest.fixture(scope="session")
def internet() -> Internet:
    if WORLD.reason:
        pytest.skip(WORLD.reason)
    return Internet()


@pytest.fixture(scope="module")
def shared_controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    """One controller for a whole module of tests that do not disturb each other."""
    ctl = ControllerProcess(tmp_path_factory.mktemp("ctl") / "data")
    try:
        yield ctl.start()
    finally:
        ctl.cleanup()
