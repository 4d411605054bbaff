"""Least privilege on nodes: V2Ray runs as the unprivileged data-plane user (agent.dataplane_user).

The first tests need nothing special (command lines, the port rule, what a non-root agent does). The others
need root, setpriv and useradd and the real `v2ray`; they read the V2Ray process's /proc/PID/status (uids,
gids, groups, capability sets) and the modes of the files it shares with the agent, all on 127.0.0.1.

Their state directory is made with tempfile.mkdtemp() under /tmp (1777), not pytest's tmp_path: pytest's own
directories above tmp_path are 0700 root, which the data-plane user cannot search (one test shows that the
driver then refuses to start V2Ray rather than fall back to root).

The system user `vpnfleet-dp` that these tests create if it is missing is left in place: creating it is
idempotent and harmless (the agent itself would create it at the first apply). A test that creates a user of
its own under another name removes it again.
"""

from __future__ import annotations

import asyncio
import grp
import logging
import os
import pwd
import shutil
import stat
import struct
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Callable

import pytest

from agent import dataplane_user
from agent.dataplane_user import DataplaneUser, DataplaneUserError
from agent.drivers.v2ray import V2RayComponent
from agent.v2ray import process
from agent.v2ray.api import V2RayApi
from agent.v2ray.process import ConfigRejected
from protos import agent_pb2
from tests.v2ray_lab import free_port, v2ray_binary

CAP_NET_BIND_SERVICE_MASK = 1 << 10
IS_ROOT = os.geteuid() == 0
NEEDS_ROOT = pytest.mark.skipif(
    not IS_ROOT or shutil.which("setpriv") is None or shutil.which("useradd") is None,
    reason="needs root, setpriv and useradd (util-linux, passwd): V2Ray switches to the data-plane user only "
           "when the agent is root",
)
NEEDS_V2RAY = pytest.mark.skipif(v2ray_binary() is None,
                                 reason="needs the v2ray binary (Debian package v2ray, or $VPNFLEET_V2RAY)")

pytestmark = pytest.mark.timeout(90)


def fake_user(uid: int = 5000, gid: int = 5001) -> DataplaneUser:
    return DataplaneUser("vpnfleet-dp", uid, gid, "vpnfleet-dp")


# -- no privileges needed ----------------------------------------------------------------------------------


def test_without_a_user_the_command_is_unchanged() -> None:
    assert dataplane_user.command(None, ["v2ray", "-config", "/x"], bind_privileged_ports=True) == \
        ["v2ray", "-config", "/x"]


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_setpriv_drops_every_capability_unless_a_low_port_needs_one(tmp_path) -> None:
    binary = str(tmp_path / "v2ray")  # a binary without file capabilities
    Path(binary).write_bytes(b"")
    argv = dataplane_user.command(fake_user(), [binary, "-config", "/x"])
    setpriv, *flags = argv[:argv.index("--")]
    assert Path(setpriv).name == "setpriv" and argv[argv.index("--") + 1:] == [binary, "-config", "/x"]
    assert set(flags) == {"--reuid=5000", "--regid=5001", "--clear-groups", "--inh-caps=-all",
                          "--ambient-caps=-all", "--bounding-set=-all", "--no-new-privs"}
    low = dataplane_user.command(fake_user(), [binary], bind_privileged_ports=True)
    for flag in ("--inh-caps", "--ambient-caps", "--bounding-set"):
        assert f"{flag}=-all,+net_bind_service" in low


def set_file_caps(path: Path, permitted: int, effective: bool = True) -> None:
    """What `setcap` writes: struct vfs_cap_data revision 2 (needs root)."""
    magic = 0x02000000 | (1 if effective else 0)
    os.setxattr(path, "security.capability", struct.pack("<5I", magic, permitted & 0xFFFFFFFF, 0,
                                                         permitted >> 32, 0))


@pytest.mark.skipif(not IS_ROOT or shutil.which("setpriv") is None, reason="setting file capabilities takes root")
def test_a_binary_s_file_capability_stays_in_the_bounding_set_or_it_could_not_run(tmp_path, caplog) -> None:
    binary = tmp_path / "v2ray"
    binary.write_bytes(b"")
    set_file_caps(binary, CAP_NET_BIND_SERVICE_MASK)  # like Debian's /usr/bin/v2ray (cap_net_bind_service=ep)
    assert dataplane_user.file_capabilities(str(binary)) == {"net_bind_service"}
    caplog.set_level(logging.WARNING, logger=dataplane_user.__name__)
    argv = dataplane_user.command(fake_user(), [str(binary)])
    assert "--bounding-set=-all,+net_bind_service" in argv  # else execve fails with EPERM
    assert "--inh-caps=-all" in argv and "--ambient-caps=-all" in argv  # nothing granted by the agent
    assert any("setcap -r" in r.getMessage() for r in caplog.records)
    set_file_caps(binary, CAP_NET_BIND_SERVICE_MASK | 1 << 12)  # and CAP_NET_ADMIN: never for the data plane
    with pytest.raises(DataplaneUserError, match="cap_12.*net_bind_service|net_bind_service.*cap_12"):
        dataplane_user.command(fake_user(), [str(binary)])


def test_the_capability_is_needed_only_below_the_unprivileged_port_start(tmp_path, monkeypatch) -> None:
    sysctl = tmp_path / "ip_unprivileged_port_start"
    monkeypatch.setattr(dataplane_user, "UNPRIVILEGED_PORT_START", sysctl)
    assert dataplane_user.unprivileged_port_start() == 1024  # unreadable: the kernel's default
    assert dataplane_user.needs_bind_capability([443, 10086]) and not dataplane_user.needs_bind_capability([1024])
    sysctl.write_text("0\n")  # this kernel lets anyone bind any port: nothing to grant
    assert not dataplane_user.needs_bind_capability([80, 443])
    sysctl.write_text("444\n")
    assert dataplane_user.needs_bind_capability([443]) and not dataplane_user.needs_bind_capability([444, 8443])


def test_an_agent_that_is_not_root_runs_the_data_plane_as_itself(monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger=dataplane_user.__name__)
    monkeypatch.setattr(dataplane_user.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(dataplane_user, "_logged", set())
    assert dataplane_user.resolve() is None and dataplane_user.resolve() is None
    said = [r for r in caplog.records if "not root" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO  # once


def test_the_user_name_comes_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv(dataplane_user.USER_ENV, raising=False)
    assert dataplane_user.configured_name() == "vpnfleet-dp"
    monkeypatch.setenv(dataplane_user.USER_ENV, "v2ray-data")
    assert dataplane_user.configured_name() == "v2ray-data"


@pytest.mark.parametrize("name, reason", [("root", "uid/gid 0"), ("Not A Name", "not a valid user name"),
                                          ("x" * 40, "not a valid user name")])
def test_root_and_bad_names_are_refused(monkeypatch, name, reason) -> None:
    monkeypatch.setattr(dataplane_user.os, "geteuid", lambda: 0)  # only the checks before useradd run
    with pytest.raises(DataplaneUserError, match=reason):
        dataplane_user.resolve(name)


def test_search_permission_is_judged_as_the_user_without_supplementary_groups() -> None:
    user = fake_user(uid=5000, gid=5001)

    def st(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
        return os.stat_result((stat.S_IFDIR | mode, 0, 0, 2, uid, gid, 0, 0, 0, 0))

    can = dataplane_user.can_search
    assert can(st(0o701), user) and not can(st(0o700), user)  # others
    assert can(st(0o710, gid=5001), user) and not can(st(0o701, gid=5001), user)  # its group: the group bit only
    assert can(st(0o100, uid=5000), user) and not can(st(0o011, uid=5000), user)  # its own: the owner bit only
    top = Path(tempfile.mkdtemp(prefix="vpnfleet-search-"))  # under /tmp, not pytest's 0700 directories
    try:
        top.chmod(0o755)
        (top / "open").mkdir(mode=0o751)
        (top / "closed").mkdir(mode=0o750)
        (top / "closed" / "inside").mkdir()
        assert dataplane_user.blocked_directory(top / "open", user) is None
        assert dataplane_user.blocked_directory(top / "open" / "missing", user) == top / "open" / "missing"
        assert dataplane_user.blocked_directory(top / "closed" / "inside", user) == top / "closed"
    finally:
        shutil.rmtree(top)


# -- root: the real V2Ray as the data-plane user -----------------------------------------------------------


def status(pid: int) -> dict[str, str]:
    """/proc/PID/status as {field: value}."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _sep, value in (line.partition(":") for line in lines)}


def caps(pid: int) -> dict[str, int]:
    fields = status(pid)
    return {name: int(fields[name], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def mode_owner(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def as_user(user: DataplaneUser, *argv: str) -> int:
    """Exit status of argv run exactly as the agent runs V2Ray (setpriv, no capabilities)."""
    return subprocess.run(dataplane_user.command(user, list(argv)), stdin=subprocess.DEVNULL,
                          capture_output=True, timeout=10).returncode


def part(*ports: int, users: dict[str, str] | None = None) -> agent_pb2.V2RayConfig:
    return agent_pb2.V2RayConfig(
        inbounds=[agent_pb2.V2RayInbound(tag=f"vm{i}", protocol="vmess", port=port, listen="127.0.0.1")
                  for i, port in enumerate(ports)],
        users=[agent_pb2.V2RayUser(email=e, uuid=u) for e, u in (users or {"alice": str(uuid.uuid4())}).items()],
    )


def low_free_port() -> int:
    """A port below 1024 that nothing on 127.0.0.1 listens on (binding it here takes root)."""
    for port in range(1023, 600, -1):
        if process.port_free(port):
            return port
    pytest.skip("no free port below 1024 on 127.0.0.1")


@pytest.fixture
def user() -> DataplaneUser:
    resolved = dataplane_user.resolve()  # creates vpnfleet-dp if needed; left in place (see the docstring)
    assert resolved is not None
    return resolved


@pytest.fixture(scope="module")
def capless_v2ray():
    """The v2ray binary copied without its file capabilities (Debian's carries cap_net_bind_service=ep; nodes
    have it removed by cloud-init), in a directory everyone may search; removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="vpnfleet-v2ray-bin-"))
    directory.chmod(0o755)
    binary = directory / "v2ray"
    shutil.copyfile(v2ray_binary(), binary)  # copyfile: content only, no xattrs
    binary.chmod(0o755)
    assert dataplane_user.file_capabilities(str(binary)) == set()
    yield str(binary)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def state_dir():
    """A state directory whose ancestors the data-plane user can search (/tmp is 1777); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="vpnfleet-priv-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def make(state_dir: Path):
    """Makes V2RayComponents on state_dir (several = agent restarts); stops all their V2Rays afterwards."""
    made: list[V2RayComponent] = []
    events: list[tuple[str, str, str]] = []

    def factory(directory: Path = state_dir, binary: str | None = None) -> V2RayComponent:
        component = V2RayComponent(directory, log_push=lambda *line: events.append(line), binary=binary,
                                   reconcile_seconds=3600, supervise_seconds=0.1)
        component.events = events  # type: ignore[attr-defined]
        made.append(component)
        return component

    yield factory
    for component in made:
        await component.close()
    for component in made:
        await component.apply(None)
    for component in made:
        for pid, ticks in process.stray_processes(str(component.config_path)):
            process.terminate(pid, ticks)  # only if a test failed half-way


@NEEDS_ROOT
def test_the_user_is_created_once_as_a_system_user_without_login(caplog) -> None:
    name = "vpnfleet-dptest"
    subprocess.run(["userdel", name], capture_output=True)  # a leftover of an interrupted run
    caplog.set_level(logging.INFO, logger=dataplane_user.__name__)
    try:
        created = dataplane_user.resolve(name)
        again = dataplane_user.resolve(name)
        assert created == again and created is not None and created.uid != 0
        entry = pwd.getpwnam(name)
        assert (entry.pw_shell, entry.pw_dir) == ("/usr/sbin/nologin", "/nonexistent")
        assert grp.getgrgid(entry.pw_gid).gr_name == name and created.group == name  # its own group
        assert entry.pw_uid < 1000  # a system user
        assert not Path("/nonexistent").exists()
        assert len([r for r in caplog.records if "created the system user" in r.getMessage()]) == 1
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@NEEDS_ROOT
@NEEDS_V2RAY
async def test_v2ray_runs_as_the_data_plane_user_with_no_capabilities(make, user, state_dir, capless_v2ray) -> None:
    component = make(binary=capless_v2ray)
    port = free_port()
    await component.apply(part(port))
    pid = component.pid
    fields = status(pid)
    assert fields["Uid"].split() == [str(user.uid)] * 4 and fields["Gid"].split() == [str(user.gid)] * 4
    assert fields["Groups"] == "" and fields["NoNewPrivs"] == "1"
    assert caps(pid) == {"CapInh": 0, "CapPrm": 0, "CapEff": 0, "CapBnd": 0, "CapAmb": 0}
    # setpriv exec'd V2Ray: the recorded pid and its command line are V2Ray's own.
    argv = process.cmdline(pid)
    assert Path(argv[0]).name == Path(component.binary).name and process.runs_config(argv, str(component.config_path))
    assert port in process.listening_ports(pid)

    # The files: what V2Ray reads is root's and shared read-only with its group; what the agent tracks is root's.
    v2 = state_dir / "v2ray"
    assert mode_owner(v2) == (0o750, 0, user.gid)
    for name in ("config.json", "last_good.json"):
        assert mode_owner(v2 / name) == (0o640, 0, user.gid), name
    for name in ("access.log", "error.log"):
        assert mode_owner(v2 / name) == (0o600, user.uid, user.gid), name
    assert mode_owner(v2 / "process.json") == (0o600, 0, 0)
    assert not (v2 / "candidate.json").exists()
    await component.take_traffic(1)
    if (v2 / "traffic.json").exists():
        assert mode_owner(v2 / "traffic.json") == (0o600, 0, 0)
    # The agent's own state directory above: search permission only, nothing else for others.
    assert stat.S_IMODE(state_dir.stat().st_mode) == 0o701 and state_dir.stat().st_uid == 0

    # What that means for the user V2Ray runs as (checked as that user, with the kernel's own rules):
    assert as_user(user, "test", "-r", str(v2 / "config.json")) == 0
    assert as_user(user, "test", "-w", str(v2 / "config.json")) != 0
    for name in ("process.json", "traffic.json"):
        if (v2 / name).exists():
            assert as_user(user, "test", "-r", str(v2 / name)) != 0, name
    assert as_user(user, "sh", "-c", f"echo x > {v2}/planted") != 0  # cannot create files in v2ray/
    assert as_user(user, "ls", str(state_dir)) != 0  # cannot list the agent's directory

    # And it is driven as before: a user change goes through its API, no restart.
    await component.apply(part(port, users={"alice": str(uuid.uuid4()), "bob": str(uuid.uuid4())}))
    assert (component.pid, component.starts) == (pid, 1)
    async with V2RayApi(component.api_port) as api:
        assert await api.add_user("vm0", "vmess", "bob", str(uuid.uuid4())) is False  # "already exists"


@NEEDS_ROOT
@NEEDS_V2RAY
async def test_an_inbound_below_1024_gets_net_bind_service_and_nothing_else(make, user, capless_v2ray) -> None:
    low = low_free_port()
    component = make(binary=capless_v2ray)
    await component.apply(part(low, free_port()))  # the driver waits until every inbound port listens
    pid = component.pid
    assert low in process.listening_ports(pid)
    assert status(pid)["Uid"].split() == [str(user.uid)] * 4
    assert caps(pid) == {name: CAP_NET_BIND_SERVICE_MASK for name in ("CapInh", "CapPrm", "CapEff", "CapBnd",
                                                                      "CapAmb")}
    # Back above 1024 (a structural change: a restart): no capability at all again.
    await component.apply(part(free_port()))
    assert component.starts == 2 and caps(component.pid)["CapEff"] == 0 and caps(component.pid)["CapBnd"] == 0


@NEEDS_ROOT
@NEEDS_V2RAY
async def test_a_restarted_agent_adopts_the_unprivileged_v2ray(make, user, capless_v2ray, caplog) -> None:
    caplog.set_level(logging.INFO, logger="agent.drivers.v2ray")  # the driver's events follow its log level
    desired = part(free_port())
    first = make(binary=capless_v2ray)
    await first.apply(desired)
    pid = first.pid
    await first.close()  # the agent "exits": V2Ray keeps running

    second = make(binary=capless_v2ray)
    record = second._record
    assert record is not None and record.pid == pid and process.is_running(record)
    await second.apply(desired)
    assert second.pid == pid and second.starts == 0
    assert any("adopted the running V2Ray" in message for _l, _s, message in second.events)
    assert status(pid)["Uid"].split()[0] == str(user.uid) and caps(pid)["CapEff"] == 0


@NEEDS_ROOT
@NEEDS_V2RAY
async def test_the_installed_binary_runs_unprivileged_with_at_most_its_file_capability(make, user) -> None:
    """/usr/bin/v2ray as installed (Debian's carries cap_net_bind_service=ep until cloud-init removes it)."""
    on_file = dataplane_user.file_capabilities(v2ray_binary())
    component = make()
    await component.apply(part(free_port()))
    pid = component.pid
    assert status(pid)["Uid"].split() == [str(user.uid)] * 4
    held = caps(pid)
    assert held["CapInh"] == held["CapAmb"] == 0  # the agent granted nothing
    allowed = CAP_NET_BIND_SERVICE_MASK if on_file else 0
    assert held["CapBnd"] == allowed and held["CapEff"] | allowed == allowed and held["CapPrm"] | allowed == allowed


@NEEDS_ROOT
@NEEDS_V2RAY
async def test_v2ray_test_runs_as_the_user_too(make, user, monkeypatch, capless_v2ray) -> None:
    # Without the group and mode that share() gives it, the candidate is root's 0600: `v2ray -test`, run as
    # the data-plane user, cannot read it. (As root it could: this shows which user the test runs as.)
    monkeypatch.setattr(process, "share", lambda path, user: None)
    component = make(binary=capless_v2ray)
    with pytest.raises(RuntimeError, match="candidate.json: permission denied") as caught:
        await component.apply(part(free_port()))
    assert not isinstance(caught.value, ConfigRejected)  # not the config's fault: worth retrying
    assert component.pid is None


@NEEDS_ROOT
@NEEDS_V2RAY
async def test_a_state_dir_the_user_cannot_reach_is_refused_not_run_as_root(make, user, state_dir) -> None:
    closed = state_dir / "closed"
    closed.mkdir(mode=0o700)  # like pytest's own directories: the user may not search it
    component = make(closed / "state")
    with pytest.raises(PermissionError, match=f"cannot reach .*{closed}"):
        await component.apply(part(free_port()))
    assert component.pid is None
    assert process.stray_processes(str(component.config_path)) == []
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700  # the agent changes nothing above its own directory
