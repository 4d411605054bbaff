"""V2Ray driver pieces that need no V2Ray process: validation, rendering, the user diff, traffic deltas that
survive crashes, the log tailer, process records, and the registry. Real V2Ray: test_agent_v2ray_live.py;
profiles and cores: test_agent_v2ray_profiles.py."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest

from agent.config import AgentConfig
from agent.drivers import build_components
from agent.drivers.v2ray import V2RayComponent
from agent.telemetry import MetricsLoop
from agent.v2ray import config as v2config
from agent.v2ray import process
from agent.v2ray.logtail import LogTailer, parse_line
from agent.v2ray.spec import Inbound, Tls, UserStep, V2RaySpec, plan_users, redact_uuids, spec_from_proto
from agent.v2ray.traffic import UsageMeter, parse_user_stats
from protos import agent_pb2

U1, U2, U3 = (str(uuid.UUID(int=i)) for i in (1, 2, 3))
TLS = agent_pb2.TlsSettings(certificate_file="/etc/ssl/node.crt", key_file="/etc/ssl/node.key",
                            server_name="node.example.net")


def inbound(tag="vm", protocol="vmess", port=10086, listen="", profile="") -> agent_pb2.V2RayInbound:
    # VLESS is served only with TLS (or REALITY): a "vless" inbound here is vless-ws-tls unless it says otherwise.
    if protocol.lower() == "vless" and not profile:
        return agent_pb2.V2RayInbound(tag=tag, protocol=protocol, port=port, listen=listen, profile="vless-ws-tls",
                                      tls=TLS)
    return agent_pb2.V2RayInbound(tag=tag, protocol=protocol, port=port, listen=listen, profile=profile)


def user(email: str, user_uuid: str) -> agent_pb2.V2RayUser:
    return agent_pb2.V2RayUser(email=email, uuid=user_uuid)


def part(inbounds=None, users=(), log_level="") -> agent_pb2.V2RayConfig:
    inbounds = [inbound()] if inbounds is None else inbounds
    return agent_pb2.V2RayConfig(inbounds=list(inbounds), users=list(users), log_level=log_level)


# -- validation ------------------------------------------------------------------------------------------


def test_a_valid_part_is_normalised():
    spec = spec_from_proto(part(
        [inbound("vm", "VMess", 443), inbound("vl", "vless", 8443, listen="::0001")],
        [user("alice", U1.upper()), user(" bob ", "{" + U2 + "}")],
    ))
    assert spec.inbounds == (
        Inbound("vm", "vmess", 443, "0.0.0.0"),  # profile "" (and "vmess"): VMess over plain TCP
        Inbound("vl", "vless", 8443, "::1", profile="vless-ws-tls",
                tls=Tls("/etc/ssl/node.crt", "/etc/ssl/node.key", "node.example.net"), ws_path="/"),
    )
    assert spec.users == {"alice": U1, "bob": U2}  # canonical lower-case UUIDs, trimmed emails
    assert spec.log_level == "warning" and spec.core == "v2ray"  # core "": V2Ray


@pytest.mark.parametrize(
    "bad, reason",
    [
        (part([inbound(tag="")]), "inbound #1 has no tag"),
        (part([inbound(tag="api")]), "reserved"),
        (part([inbound(protocol="trojan")]), "inbound 'vm': protocol 'trojan' is not supported"),
        (part([inbound(port=0)]), "inbound 'vm': port 0 is out of range"),
        (part([inbound(port=70000)]), "port 70000 is out of range"),
        (part([inbound(listen="example.com")]), "inbound 'vm': listen 'example.com' is not an IP address"),
        (part([inbound(), inbound(port=1)]), "inbound tag 'vm' is listed twice"),
        (part([inbound("a", port=1), inbound("b", port=1)]), "port 1 is used by both inbound 'a' and inbound 'b'"),
        (part(users=[user("", U1)]), "user #1 has no email"),
        (part(users=[user("a>>>b", U1)]), "user 'a>>>b'"),
        (part(users=[user("a\nb", U1)]), "control characters"),
        (part(users=[user("alice", "not-a-uuid")]), "user 'alice': uuid is not a valid UUID"),
        (part(users=[user("alice", U1), user("Alice", U2)]), "user 'Alice' is listed twice"),
        (part(log_level="verbose"), "log_level 'verbose'"),
    ],
)
def test_bad_parts_are_refused_with_a_reason(bad, reason):
    with pytest.raises(ValueError, match=reason):
        spec_from_proto(bad)


def test_a_bad_uuid_is_not_echoed_in_the_error():
    secret = U1[:-1] + "g"  # almost a UUID: an operator's typo must not leak the rest of the credential
    with pytest.raises(ValueError) as caught:
        spec_from_proto(part(users=[user("alice", secret)]))
    assert secret not in str(caught.value)


def test_component_validate_and_apply_refuse_the_same(tmp_path):
    component = V2RayComponent(tmp_path, binary="/nonexistent/v2ray")
    with pytest.raises(ValueError, match="port 0"):
        component.validate(part([inbound(port=0)]))
    with pytest.raises(ValueError, match="port 0"):
        asyncio.run(component.apply(part([inbound(port=0)])))
    assert not (tmp_path / "v2ray").exists()  # nothing was touched


def test_without_the_binary_there_is_no_capability_and_apply_says_why(tmp_path):
    component = V2RayComponent(tmp_path, binary="/nonexistent/v2ray", xray_binary="/nonexistent/xray")
    assert component.capabilities == ()
    assert component.name == component.field == "v2ray" and component.traffic_field == "v2ray_users"
    with pytest.raises(RuntimeError, match="VPNFLEET_V2RAY"):
        asyncio.run(component.apply(part()))
    asyncio.run(component.apply(None))  # nothing to remove: fine
    assert asyncio.run(component.take_traffic(1)) == []


def test_the_binary_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("VPNFLEET_V2RAY", sys.executable)
    monkeypatch.setenv("VPNFLEET_XRAY", "/nonexistent/xray")
    component = V2RayComponent(tmp_path)
    assert component.binary == sys.executable and component.capabilities == ("v2ray",)
    # Each core's binary has its own variable; capabilities list the cores whose binary is there.
    monkeypatch.setenv("VPNFLEET_XRAY", sys.executable)
    monkeypatch.setenv("VPNFLEET_V2RAY", "/nonexistent/v2ray")
    component = V2RayComponent(tmp_path)
    assert component.binaries == {"v2ray": "/nonexistent/v2ray", "xray": sys.executable}
    assert component.capabilities == ("xray",)
    assert V2RayComponent(tmp_path, binary=sys.executable).capabilities == ("v2ray", "xray")


# -- rendering -------------------------------------------------------------------------------------------


def test_render_has_the_inbounds_users_api_stats_and_logs():
    spec = spec_from_proto(part(
        [inbound("vm", "vmess", 443), inbound("vl", "vless", 8443, "127.0.0.1")],
        [user("alice", U1), user("bob", U2)], log_level="info",
    ))
    config = v2config.render(spec, 10085, "/s/access.log", "/s/error.log")
    # The access log (every subscriber's source and destinations) is off unless asked for.
    assert config["log"] == {"access": "none", "error": "/s/error.log", "loglevel": "info"}
    assert config["api"] == {"tag": "api", "services": ["HandlerService", "StatsService", "LoggerService"]}
    assert config["stats"] == {}
    assert config["policy"]["levels"]["0"] == {"statsUserUplink": True, "statsUserDownlink": True}
    api, vm, vl = config["inbounds"]
    assert api == {"tag": "api", "listen": "127.0.0.1", "port": 10085, "protocol": "dokodemo-door",
                   "settings": {"address": "127.0.0.1"}}
    # The API's own rule comes first; everything else is the egress policy (tests/agent/test_agent_egress.py).
    assert config["routing"]["rules"][0] == {"type": "field", "inboundTag": ["api"], "outboundTag": "api"}
    assert config["routing"]["domainStrategy"] == "IPIfNonMatch"
    assert vm["listen"] == "0.0.0.0" and vm["port"] == 443 and vm["protocol"] == "vmess"
    assert vm["settings"] == {"clients": [{"id": U1, "alterId": 0, "email": "alice", "level": 0},
                                          {"id": U2, "alterId": 0, "email": "bob", "level": 0}]}
    assert vl["settings"] == {"clients": [{"id": U1, "email": "alice", "level": 0},
                                          {"id": U2, "email": "bob", "level": 0}], "decryption": "none"}
    assert "streamSettings" not in vm and vl["streamSettings"]["network"] == "ws"  # profiles: test_..._profiles.py
    assert [o["protocol"] for o in config["outbounds"]] == ["freedom", "blackhole"]
    assert "vpnfleet" not in config  # V2Ray's configs are what they were before cores


def test_parse_reads_back_what_render_wrote():
    spec = spec_from_proto(part([inbound("vm", "vmess", 443), inbound("vl", "vless", 8443, "::1")],
                                [user("alice", U1), user("bob", U2)], log_level="error"))
    data = v2config.dumps(v2config.render(spec, 10085, "a", "e"))
    assert v2config.parse(data) == (spec, 10085)
    with pytest.raises(ValueError, match="not a configuration written by the agent"):
        v2config.parse(b'{"inbounds": []}')


# -- the user diff ---------------------------------------------------------------------------------------


def test_plan_users_adds_removes_and_rotates_only_what_changed():
    old = {"alice": U1, "bob": U2, "carol": U3}
    new = {"alice": U1, "bob": U3, "dave": U2}
    plan = plan_users(old, new)
    assert (plan.added, plan.removed, plan.rotated) == (["dave"], ["carol"], ["bob"])
    assert plan.steps == {
        "carol": [UserStep("carol")],
        "bob": [UserStep("bob"), UserStep("bob", U3)],  # removed before it is added again
        "dave": [UserStep("dave", U2)],
    }
    assert not plan_users(old, dict(reversed(old.items())))  # order does not matter


def test_plan_users_treats_a_change_of_case_as_a_replacement():
    # V2Ray keys users by the lower-cased email: "Alice" must go before "alice" can be added.
    plan = plan_users({"Alice": U1}, {"alice": U1})
    assert plan.steps == {"alice": [UserStep("Alice"), UserStep("alice", U1)]}


def test_redact_uuids():
    assert redact_uuids(f"invalid user {U1} and {U2.replace('-', '')}; id 12345 at 2024/05/01 10:00:00") == \
        "invalid user <uuid> and <uuid>; id 12345 at 2024/05/01 10:00:00"
    assert redact_uuids(f"invalid UUID: {U3[:-3]}") == "invalid UUID: <uuid>"


# -- traffic ---------------------------------------------------------------------------------------------


def test_parse_user_stats_sums_per_email():
    stats = {
        "user>>>alice>>>traffic>>>uplink": 10, "user>>>alice>>>traffic>>>downlink": 1000,
        "user>>>bob>>>traffic>>>downlink": 5,
        "inbound>>>vm>>>traffic>>>uplink": 99, "user>>>odd>>>name>>>traffic>>>uplink": 7,
    }
    assert parse_user_stats(stats) == {"alice": (10, 1000), "bob": (0, 5)}


def entries(items) -> dict[str, tuple[int, int]]:
    return {e.email: (e.uplink_bytes, e.downlink_bytes) for e in items}


def test_meter_hands_over_each_byte_once(tmp_path):
    meter = UsageMeter(tmp_path / "traffic.json")
    assert meter.take(1, {}) == [] and not (tmp_path / "traffic.json").exists()  # nothing: no write
    assert entries(meter.take(2, {"a": (1, 2), "b": (0, 0)})) == {"a": (1, 2)}  # silent users are left out
    meter.spooled(2)
    assert meter.take(3, {}) == []
    meter.keep({"a": (5, 5)})  # read just before a V2Ray restart
    assert entries(meter.take(4, {"a": (1, 1), "c": (0, 9)})) == {"a": (6, 6), "c": (0, 9)}
    meter.give_back(meter.take(5, {}) or [])  # nothing new: nothing to give back
    meter.spooled(4)
    assert meter.carried() == {}


def test_meter_give_back_carries_to_the_next_take(tmp_path):
    meter = UsageMeter(tmp_path / "traffic.json")
    taken = meter.take(1, {"a": (1, 2)})
    meter.give_back(taken)  # the batch could not be spooled
    assert entries(meter.take(1, {"a": (10, 20)})) == {"a": (11, 22)}


def test_meter_after_a_crash_drops_what_the_spool_already_has(tmp_path):
    path = tmp_path / "traffic.json"
    UsageMeter(path).take(7, {"a": (1, 2)})  # crash after the batch was spooled, before spooled(7)
    meter = UsageMeter(path)
    assert meter.carried() == {"a": (1, 2)}
    meter.spooled(7)  # MetricsLoop at start: the spool's last seq is 7
    assert meter.take(8, {}) == [] and meter.carried() == {}
    assert UsageMeter(path).carried() == {}


def test_meter_after_a_crash_delivers_what_the_spool_lacks_exactly_once(tmp_path):
    path = tmp_path / "traffic.json"
    UsageMeter(path).take(7, {"a": (1, 2)})  # crash before batch 7 reached the spool
    meter = UsageMeter(path)
    meter.spooled(6)  # the spool ends at 6
    assert entries(meter.take(7, {"a": (0, 1)})) == {"a": (1, 3)}
    meter.spooled(7)
    again = UsageMeter(path)
    again.spooled(7)
    assert again.take(8, {}) == []


def test_meter_resolves_a_leftover_record_without_the_start_call(tmp_path):
    path = tmp_path / "traffic.json"
    UsageMeter(path).take(3, {"a": (1, 1)})
    assert UsageMeter(path).take(5, {}) == []  # the spool already holds 4: batch 3 was delivered
    UsageMeter(path).take(5, {"b": (2, 2)})
    assert entries(UsageMeter(path).take(5, {})) == {"b": (2, 2)}  # batch 5 never made it: again, once


class FakeSpool:
    """MetricsLoop's view of the spool: last_seq and append (which can be made to fail)."""

    def __init__(self, last_seq=0):
        self.last_seq = last_seq
        self.batches: list[agent_pb2.TelemetryBatch] = []
        self.fail = False

    def append(self, samples, **extra):
        if self.fail:
            raise OSError("disk full")
        self.last_seq += 1
        batch = agent_pb2.TelemetryBatch(seq=self.last_seq, metrics=samples, **extra)
        self.batches.append(batch)
        return batch


class FakeSampler:
    def sample(self):
        return agent_pb2.MetricSample(ts_ms=1)


async def run_loop_once(loop: MetricsLoop, spool: FakeSpool) -> None:
    """Let MetricsLoop take one batch (interval 0), then stop it."""
    before = len(spool.batches)
    task = asyncio.create_task(loop.run())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if len(spool.batches) > before:
            break
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_component_is_a_metrics_loop_traffic_source(tmp_path):
    """Carried traffic (here: left by a crash) rides in the loop's batch under v2ray_users, then is gone."""
    UsageMeter(tmp_path / "v2ray" / "traffic.json").take(4, {"alice": (3, 4)})  # batch 4 never spooled
    component = V2RayComponent(tmp_path, binary="/nonexistent/v2ray")
    spool = FakeSpool(last_seq=3)
    loop = MetricsLoop(FakeSampler(), spool, 0, traffic_sources=[component])
    await run_loop_once(loop, spool)
    assert [(b.seq, entries(b.v2ray_users)) for b in spool.batches][:1] == [(4, {"alice": (3, 4)})]
    assert component.carried_traffic() == {}
    assert V2RayComponent(tmp_path, binary="/nonexistent/v2ray").carried_traffic() == {}


async def test_a_batch_that_cannot_be_spooled_gives_the_traffic_back(tmp_path):
    UsageMeter(tmp_path / "v2ray" / "traffic.json").keep({"alice": (3, 4)})
    component = V2RayComponent(tmp_path, binary="/nonexistent/v2ray")
    spool = FakeSpool()
    spool.fail = True
    loop = MetricsLoop(FakeSampler(), spool, 0, traffic_sources=[component])
    task = asyncio.create_task(loop.run())
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert component.carried_traffic() == {"alice": (3, 4)}  # still there, once
    spool.fail = False
    await run_loop_once(loop, spool)
    assert sum(entries(b.v2ray_users).get("alice", (0, 0))[1] for b in spool.batches) == 4


# -- live logs -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, access, expected",
    [
        ("2024/05/01 10:00:00 [Warning] [31415] v2ray.com/core: V2Ray 4.34.0 started", False,
         ("warning", "[31415] v2ray.com/core: V2Ray 4.34.0 started")),
        ("2024/05/01 10:00:00.123456 [Debug] x", False, ("debug", "x")),
        ("2024/05/01 10:00:00 [Info] y", False, ("info", "y")),
        ("2024/05/01 10:00:00 [Error] z", False, ("error", "z")),
        ("panic: runtime error", False, ("error", "panic: runtime error")),
        ("V2Ray 4.34.0 (user)", False, ("info", "V2Ray 4.34.0 (user)")),
        ("2024/05/01 10:00:00 127.0.0.1:5 accepted tcp:127.0.0.1:80 [vm >> direct] email: alice", True,
         ("info", "127.0.0.1:5 accepted tcp:127.0.0.1:80 [vm >> direct] email: alice")),
        (f"2024/05/01 10:00:00 [Info] invalid user {U1}", False, ("info", "invalid user <uuid>")),
    ],
)
def test_parse_line(line, access, expected):
    assert parse_line(line, access) == expected


def test_tailer_forwards_new_lines_and_keeps_files_bounded(tmp_path):
    error, access = tmp_path / "error.log", tmp_path / "access.log"
    error.write_text("old line from before the agent started\n")
    got: list[tuple[str, str]] = []
    tailer = LogTailer([(access, True), (error, False)], lambda level, msg: got.append((level, msg)), max_bytes=250)
    assert tailer.poll() == 0  # history is not replayed
    with open(error, "a") as handle:
        handle.write("2024/05/01 10:00:00 [Error] boom\n2024/05/01 10:00:00 [Info] half")
    access.write_text("2024/05/01 10:00:00 1.2.3.4:5 accepted tcp:x:1 email: a\n")  # appears later
    assert tailer.poll() == 2
    assert got == [("info", "1.2.3.4:5 accepted tcp:x:1 email: a"), ("error", "boom")]
    with open(error, "a") as handle:
        handle.write(" a line\n" + "2024/05/01 10:00:00 [Info] padding\n" * 6)  # the file is now past max_bytes
    assert error.stat().st_size > 250
    assert tailer.poll() == 7 and got[2] == ("info", "half a line")
    assert error.stat().st_size == 0  # read to the end, then truncated
    with open(error, "a") as handle:
        handle.write("2024/05/01 10:00:00 [Warning] after truncation\n")
    tailer.poll()
    assert got[-1] == ("warning", "after truncation")


def test_tailer_skips_a_backlog_it_cannot_stream_and_says_so(tmp_path):
    error = tmp_path / "error.log"
    error.write_text("")
    got: list[tuple[str, str]] = []
    tailer = LogTailer([(error, False)], lambda level, msg: got.append((level, msg)), max_bytes=100)
    flood = "2024/05/01 10:00:00 [Info] flood\n" * 20
    error.write_text(flood)
    tailer.poll()
    assert got == [("warning", f"error.log: {len(flood)} bytes of V2Ray log skipped (written faster than streamed)")]
    assert error.stat().st_size == 0


# -- processes -------------------------------------------------------------------------------------------


def test_a_record_matches_only_the_same_process(tmp_path):
    config = str(tmp_path / "config.json")
    # A stand-in whose command line looks like ours: `... -config PATH`.
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "-config", config])
    try:
        # Popen returns once exec has begun; /proc/PID/cmdline is empty until the kernel has set up the new
        # program's arguments, a moment later.
        deadline = time.monotonic() + 10
        while not process.cmdline(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        ticks = process.start_ticks(proc.pid)
        record = process.ProcessRecord(proc.pid, ticks, process.boot_id(), config)
        assert process.is_running(record)
        # With the binary recorded (every record since cores), argv[0] must be that binary too.
        assert process.is_running(process.ProcessRecord(proc.pid, ticks, process.boot_id(), config, "xray",
                                                        sys.executable))
        assert not process.is_running(process.ProcessRecord(proc.pid, ticks, process.boot_id(), config, "xray",
                                                            "/usr/bin/xray"))
        assert not process.is_running(process.ProcessRecord(proc.pid, ticks + 1, process.boot_id(), config))  # reused
        assert not process.is_running(process.ProcessRecord(proc.pid, ticks, "other-boot", config))
        assert not process.is_running(process.ProcessRecord(proc.pid, ticks, process.boot_id(), config + ".x"))
        assert process.stray_processes(config) == [(proc.pid, ticks)]
        assert process.stray_processes(config, exclude=proc.pid) == []
        assert process.ProcessRecord.from_json(record.to_json()) == record
        # A record written before cores (no core, no binary) is V2Ray's, binary unchecked.
        old = json.dumps({"pid": proc.pid, "start_ticks": ticks, "boot_id": record.boot_id, "config": config})
        assert process.ProcessRecord.from_json(old.encode()) == record and record.core == "v2ray"
        process.terminate(proc.pid, ticks + 1)  # not that process: left alone
        assert proc.poll() is None
        process.terminate(proc.pid, ticks, timeout=5)
        assert proc.wait(5) is not None
        assert not process.is_running(record)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_port_helpers():
    port = process.pick_free_port()
    assert process.port_free(port)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        assert not process.port_free(port)
        assert port in process.listening_ports(os.getpid())
    assert process.pick_free_port(avoid={port}) != port


# -- registry --------------------------------------------------------------------------------------------


def test_build_components_registers_v2ray_and_its_traffic(tmp_path):
    sources = []
    cfg = AgentConfig(grpc_addr="x:1", enroll_addr="x:2", ca_cert_pem="-----BEGIN CERTIFICATE-----",
                      state_dir=str(tmp_path))
    components = build_components(cfg, lambda s: None, lambda level: None, add_traffic_source=sources.append)
    names = [c.name for c in components]
    assert names[:2] == ["agent", "v2ray"]
    v2ray = components[1]
    assert isinstance(v2ray, V2RayComponent) and v2ray in sources


def test_events_respect_the_agent_log_level(tmp_path, caplog):
    pushed = []
    component = V2RayComponent(tmp_path, log_push=lambda *line: pushed.append(line), binary="/nonexistent")
    caplog.set_level(logging.WARNING, logger="agent.drivers.v2ray")
    component._event("info", "hidden")
    component._event("error", "shown")
    assert pushed == [("error", "v2ray", "shown")]


def test_spec_equality_ignores_user_order():
    a = V2RaySpec((), {"x": U1, "y": U2}, "warning")
    b = V2RaySpec((), {"y": U2, "x": U1}, "warning")
    assert a == b and json.dumps(a.users) != json.dumps(b.users)
