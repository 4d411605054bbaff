import asyncio
import platform
import socket

import pytest

import agent
from agent import commands
from agent.commands import CommandRunner, go_arch, parse_target, tcping
from protos import agent_pb2


@pytest.fixture
async def listening_port():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def runner() -> CommandRunner:
    return CommandRunner(alias="edge-1", log_level=lambda: "debug", cert_path="/s/agent.crt", key_path="/s/agent.key")


async def test_tcping_to_a_listening_port(listening_port):
    target = f"127.0.0.1:{listening_port}"
    result = await tcping(target, 2.0)
    assert result.target == target
    assert result.connected
    assert result.error == ""
    assert 0 <= result.latency_ms < 2000


async def test_tcping_to_a_closed_port(free_port):
    port = free_port()
    result = await tcping(f"127.0.0.1:{port}", 2.0)
    assert not result.connected
    assert result.latency_ms == 0
    assert result.error == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


async def test_tcping_ipv6_loopback_target_is_accepted(free_port):
    port = free_port()
    result = await tcping(f"[::1]:{port}", 2.0)
    assert not result.connected and result.error.startswith(f"dial tcp [::1]:{port}:")


@pytest.mark.parametrize(
    "target, expected",
    [
        ("127.0.0.1:80", ("127.0.0.1", 80)),
        ("example.org:443", ("example.org", 443)),
        ("[::1]:8443", ("::1", 8443)),
    ],
)
def test_parse_target(target, expected):
    assert parse_target(target) == expected


@pytest.mark.parametrize(
    "target",
    ["", "127.0.0.1", ":80", "host:", "host:0", "host:65536", "host:http", "::1:80", "[::1]80", "[nothost]:80", "[::1"],
)
def test_malformed_targets_are_refused(target):
    with pytest.raises(ValueError):
        parse_target(target)


async def test_malformed_target_becomes_a_command_error():
    cmd = agent_pb2.Command(id="c1", timeout_ms=1000, tcping=agent_pb2.TcpingRequest(target="no-port"))
    result = await runner().run(cmd)
    assert result.id == "c1"
    assert "malformed target" in result.error
    assert not result.HasField("tcping")


async def test_tcping_command(listening_port):
    cmd = agent_pb2.Command(id="c2", timeout_ms=2000, tcping=agent_pb2.TcpingRequest(target=f"127.0.0.1:{listening_port}"))
    result = await runner().run(cmd)
    assert result.error == ""
    assert result.tcping.connected


async def test_unknown_command():
    result = await runner().run(agent_pb2.Command(id="c3", timeout_ms=1000))
    assert (result.id, result.error) == ("c3", "unknown command")


async def test_timeout_is_respected(monkeypatch):
    async def hang(target, timeout_s):
        await asyncio.sleep(10)

    monkeypatch.setattr(commands, "tcping", hang)
    cmd = agent_pb2.Command(id="c4", timeout_ms=100, tcping=agent_pb2.TcpingRequest(target="127.0.0.1:1"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await runner().run(cmd)
    assert result.error == "timeout after 100 ms"
    assert loop.time() - started < 2


async def test_info_command_fields_are_sane():
    result = await runner().run(agent_pb2.Command(id="c5", timeout_ms=3000, info=agent_pb2.InfoRequest()))
    assert result.error == ""
    info = result.info
    assert info.alias == "edge-1"
    assert info.os == "linux"
    assert info.arch == go_arch(platform.machine())
    assert 0 <= info.cpu <= 100
    assert info.mem_total > 0 and 0 < info.mem_used <= info.mem_total
    assert info.swap_used <= info.swap_total
    assert info.netrx > 0 or info.nettx > 0
    assert info.sysup > 0
    assert info.ver == agent.__version__
    assert info.name == socket.gethostname()
    assert info.uptime < 60
    assert (info.log, info.tls, info.crt, info.key) == ("debug", "1", "/s/agent.crt", "/s/agent.key")


@pytest.mark.parametrize(
    "machine, arch", [("x86_64", "amd64"), ("aarch64", "arm64"), ("armv7l", "arm"), ("i686", "386"), ("mips", "mips")]
)
def test_go_arch(machine, arch):
    assert go_arch(machine) == arch
