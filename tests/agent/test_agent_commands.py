import asyncio
import platform
import socket

import pytest

import agent
from agent import commands
from agent.commands import CommandRunner, go_arch, parse_target, refusal, tcping
from agent.drivers.agent_settings import AgentSettingsComponent
from protos import agent_pb2

OFF = "tcping to private, loopback and link-local targets is off (diagnostics.allow_private_targets)"


class Listener:
    """A loopback TCP server this test started: its port, and how many connections it accepted."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    def on_connect(self, reader, writer) -> None:
        self.accepted += 1
        writer.close()

    async def wait_accepted(self, n: int) -> None:
        """Until the server has accepted n connections (its accept runs a loop iteration after the dial)."""
        async with asyncio.timeout(5):
            while self.accepted < n:
                await asyncio.sleep(0.01)
        assert self.accepted == n


@pytest.fixture
async def listener():
    lst = Listener()
    server = await asyncio.start_server(lst.on_connect, "127.0.0.1", 0)
    lst.port = server.sockets[0].getsockname()[1]
    yield lst
    server.close()
    await server.wait_closed()


@pytest.fixture
async def listening_port(listener):
    return listener.port


def runner(allow_private_targets: bool = False) -> CommandRunner:
    return CommandRunner(alias="edge-1", log_level=lambda: "debug", cert_path="/s/agent.crt", key_path="/s/agent.key",
                         allow_private_targets=allow_private_targets)


async def test_tcping_to_a_listening_port(listening_port):
    target = f"127.0.0.1:{listening_port}"
    result = await tcping(target, 2.0, allow_private_targets=True)
    assert result.target == target
    assert result.connected
    assert result.error == ""
    assert 0 <= result.latency_ms < 2000


async def test_tcping_to_a_closed_port(free_port):
    port = free_port()
    result = await tcping(f"127.0.0.1:{port}", 2.0, allow_private_targets=True)
    assert not result.connected
    assert result.latency_ms == 0
    assert result.error == f"dial tcp 127.0.0.1:{port}: connect: connection refused"


async def test_tcping_ipv6_loopback_target_is_accepted(free_port):
    port = free_port()
    result = await tcping(f"[::1]:{port}", 2.0, allow_private_targets=True)
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
    result = await runner(allow_private_targets=True).run(cmd)
    assert result.error == ""
    assert result.tcping.connected


# -- private targets: refused unless diagnostics.allow_private_targets (only our own loopback listeners) ---------


def tcping_command(target: str) -> agent_pb2.Command:
    return agent_pb2.Command(id="p1", timeout_ms=2000, tcping=agent_pb2.TcpingRequest(target=target))


async def test_a_loopback_target_is_refused_by_default(listener):
    target = f"127.0.0.1:{listener.port}"
    result = await runner().run(tcping_command(target))
    assert result.error == ""  # the command worked; the target was refused
    assert (result.tcping.target, result.tcping.connected, result.tcping.latency_ms) == (target, False, 0)
    assert result.tcping.error == f"target 127.0.0.1 is a loopback address; {OFF}"
    assert listener.accepted == 0


async def test_a_name_resolving_to_loopback_is_refused(listener):
    result = await runner().run(tcping_command(f"localhost:{listener.port}"))
    assert not result.tcping.connected
    # localhost is 127.0.0.1 and/or ::1 depending on /etc/hosts; every resolved address is checked
    assert result.tcping.error.startswith("target localhost resolves to ")
    assert result.tcping.error.endswith(f", a loopback address; {OFF}")
    assert listener.accepted == 0


@pytest.mark.parametrize("host, what", [
    ("127.1", "resolves to 127.0.0.1, a loopback address"),  # inet_aton's short form is still loopback
    ("0.0.0.0", 'is an unspecified ("this network") address'),  # Linux connects 0.0.0.0 to the node itself
    ("[::ffff:127.0.0.1]", "is an IPv4-mapped form of 127.0.0.1, a loopback address"),
])
async def test_other_spellings_of_the_node_itself_are_refused(listener, host, what):
    result = await tcping(f"{host}:{listener.port}", 2.0)
    shown = host.strip("[]")
    assert (result.connected, result.error) == (False, f"target {shown} {what}; {OFF}")
    assert listener.accepted == 0


def test_metadata_refusal_text():
    # Classification only: no packet ever goes to the metadata service from a test.
    assert refusal("169.254.169.254", ["169.254.169.254"]) == (
        f"target 169.254.169.254 is a link-local address (cloud metadata); {OFF}")
    assert refusal("metadata.example", ["203.0.113.7", "fd00:ec2::254"]) == (
        f"target metadata.example resolves to fd00:ec2::254, a unique local (private) address; {OFF}")
    assert refusal("example.org", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]) is None


async def test_the_switch_allows_loopback_targets(listener):
    allowing = runner()
    allowing.set_allow_private_targets(True)
    for target in (f"127.0.0.1:{listener.port}", f"localhost:{listener.port}"):
        result = await allowing.run(tcping_command(target))
        assert result.tcping.connected and result.tcping.error == "", result
    await listener.wait_accepted(2)


async def test_the_connection_goes_to_the_checked_address_without_resolving_again(listener, monkeypatch):
    real = socket.getaddrinfo
    lookups: list[str] = []

    def fake_getaddrinfo(host, *args, **kwargs):
        lookups.append(host)
        if host == "rebind.test" and len(lookups) == 1:
            return real("127.0.0.1", *args, **kwargs)
        if host == "rebind.test":
            raise socket.gaierror(socket.EAI_NONAME, "a second lookup would have answered something else")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    result = await tcping(f"rebind.test:{listener.port}", 2.0, allow_private_targets=True)
    assert result.connected, result
    assert lookups == ["rebind.test"]
    lookups.clear()
    refused = await tcping(f"rebind.test:{listener.port}", 2.0)
    assert refused.error == f"target rebind.test resolves to 127.0.0.1, a loopback address; {OFF}"
    assert lookups == ["rebind.test"]
    await listener.wait_accepted(1)


async def test_agent_settings_carry_the_switch_to_the_runner():
    run = runner()
    component = AgentSettingsComponent(default_metrics_interval=10, default_log_level="info",
                                       set_metrics_interval=lambda s: None, set_log_level=lambda level: None,
                                       set_allow_private_targets=run.set_allow_private_targets)
    assert run.allow_private_targets is False
    await component.apply(agent_pb2.AgentSettings(allow_private_targets=True))
    assert run.allow_private_targets is True
    await component.apply(agent_pb2.AgentSettings(log_level="debug"))
    assert run.allow_private_targets is False
    await component.apply(agent_pb2.AgentSettings(allow_private_targets=True))
    await component.apply(None)  # no settings at all: off
    assert run.allow_private_targets is False


async def test_unknown_command():
    result = await runner().run(agent_pb2.Command(id="c3", timeout_ms=1000))
    assert (result.id, result.error) == ("c3", "unknown command")


async def test_timeout_is_respected(monkeypatch):
    async def hang(target, timeout_s, **kwargs):
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
