"""Cores and transport profiles without a core process: the Core data, validation of every profile (and the
errors naming the field, never a secret), rendering, the exact read-back parse() must give (adoption compares
it), the API's service and type names (against a stand-in gRPC server), and the TLS file check.

The real cores with real traffic: test_agent_v2ray_profiles_live.py (REALITY, ws-tls) and
test_agent_xray_live.py (the driver on Xray, core switches).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os

import grpc
import pytest

from agent.dataplane_user import DataplaneUser
from agent.drivers.v2ray import V2RayComponent, _mask_sources
from agent.v2ray import config as v2config
from agent.v2ray import process
from agent.v2ray.api import V2RayApi
from agent.v2ray.core import CORES, V2RAY, XRAY, core_named
from agent.v2ray.spec import Inbound, Reality, Tls, redact_credentials, spec_from_proto
from protos import agent_pb2
from protos import v2ray_handler_pb2 as handler
from protos import v2ray_stats_pb2 as stats

U1 = "0b7e3c5e-1111-4222-8333-444455556666"
#: A REALITY key pair as the controller makes it (base64url of raw X25519 keys, no padding): test-only.
PRIVATE_KEY = "SBWnnNrq6ioChtiC0y2Rv3I22VN2mBvEn0QKNM01hWw"
TLS = agent_pb2.TlsSettings(certificate_file="/etc/vpnfleet/tls/node.crt", key_file="/etc/vpnfleet/tls/node.key",
                            server_name="cdn.example.net")


def reality(**fields) -> agent_pb2.RealitySettings:
    values = dict(private_key=PRIVATE_KEY, short_ids=["", "0123ABCD"], dest="www.example.com:443",
                  server_names=["www.example.com", "Example.com"])
    values.update(fields)
    return agent_pb2.RealitySettings(**values)


def inbound(profile: str, protocol: str = "", **fields) -> agent_pb2.V2RayInbound:
    if profile == "vless-reality-vision":
        fields.setdefault("reality", reality())
    elif profile.endswith("-ws-tls"):
        fields.setdefault("tls", TLS)
    return agent_pb2.V2RayInbound(tag="in", protocol=protocol, port=8443, profile=profile, **fields)


def part(*inbounds: agent_pb2.V2RayInbound, core: str = "xray") -> agent_pb2.V2RayConfig:
    return agent_pb2.V2RayConfig(inbounds=list(inbounds), users=[agent_pb2.V2RayUser(email="alice", uuid=U1)],
                                 core=core)


# -- cores -----------------------------------------------------------------------------------------------


def test_the_cores_differ_only_in_names_and_command_lines():
    assert (V2RAY.binary_env, V2RAY.default_binary, XRAY.binary_env, XRAY.default_binary) == \
        ("VPNFLEET_V2RAY", "v2ray", "VPNFLEET_XRAY", "xray")
    assert V2RAY.run_argv("v2ray", "/s/c.json") == ["v2ray", "-config", "/s/c.json"]
    assert V2RAY.test_argv("v2ray", "/s/c.json") == ["v2ray", "-test", "-config", "/s/c.json"]
    assert XRAY.run_argv("xray", "/s/c.json") == ["xray", "run", "-config", "/s/c.json"]
    assert XRAY.test_argv("xray", "/s/c.json") == ["xray", "run", "-test", "-config", "/s/c.json"]
    # The process record's check finds the -config argument after Xray's subcommand too.
    assert process.runs_config(XRAY.run_argv("xray", "/s/c.json"), "/s/c.json")
    assert (V2RAY.handler_service, V2RAY.stats_service) == (
        "v2ray.core.app.proxyman.command.HandlerService", "v2ray.core.app.stats.command.StatsService")
    assert (XRAY.handler_service, XRAY.stats_service) == (
        "xray.app.proxyman.command.HandlerService", "xray.app.stats.command.StatsService")
    assert dict(XRAY.account_types) == {"vmess": "xray.proxy.vmess.Account", "vless": "xray.proxy.vless.Account"}
    assert XRAY.add_user_type == "xray.app.proxyman.command.AddUserOperation"
    assert V2RAY.remove_user_type == "v2ray.core.app.proxyman.command.RemoveUserOperation"
    assert "vless-reality-vision" in XRAY.profiles and "vless-reality-vision" not in V2RAY.profiles
    assert list(CORES) == ["v2ray", "xray"]


def test_core_names():
    assert core_named("") is V2RAY and core_named(" XRay ") is XRAY
    with pytest.raises(ValueError, match="core 'sing-box' is not supported"):
        core_named("sing-box")
    with pytest.raises(ValueError, match="core 'sing-box'"):
        spec_from_proto(part(inbound("vmess"), core="sing-box"))
    assert spec_from_proto(part(inbound("vmess"), core="")).core == "v2ray"
    assert spec_from_proto(part(inbound("vmess"))).core == "xray"


def test_the_core_is_structural():
    vmess = part(inbound("vmess"), core="v2ray")
    on_xray = part(inbound("vmess"), core="xray")
    a, b = spec_from_proto(vmess), spec_from_proto(on_xray)
    assert a.users == b.users and a.structure != b.structure
    # What runs when b's structure could not replace a: a's structure, b's users.
    kept = a.with_users_of(dataclasses.replace(b, users={"bob": U1}))
    assert kept.structure == a.structure and kept.users == {"bob": U1}


def test_an_unknown_core_fails_the_apply_as_a_rejected_config(tmp_path):
    component = V2RayComponent(tmp_path, binary="/nonexistent/v2ray", xray_binary="/nonexistent/xray")
    with pytest.raises(ValueError, match="core 'xray2'"):  # ValueError: the state applier does not retry it
        component.validate(part(inbound("vmess"), core="xray2"))
    with pytest.raises(ValueError, match="needs the Xray core"):
        asyncio.run(component.apply(part(inbound("vless-reality-vision"), core="v2ray")))
    assert not (tmp_path / "v2ray").exists()


# -- validation ------------------------------------------------------------------------------------------


def test_every_profile_is_validated_and_normalised():
    vmess, plain, reality_in, vmess_ws, vless_ws = (spec_from_proto(part(i)).inbounds[0] for i in (
        inbound("vmess"), inbound("", "vmess"), inbound("vless-reality-vision", "VLESS"),
        inbound("vmess-ws-tls", ws_path="/ws-1a2b"), inbound("vless-ws-tls")))
    assert vmess == plain == Inbound("in", "vmess", 8443, "0.0.0.0")  # "vmess" is "" (the same config)
    assert reality_in == Inbound("in", "vless", 8443, "0.0.0.0", profile="vless-reality-vision", reality=Reality(
        PRIVATE_KEY, ("", "0123abcd"), "www.example.com:443", ("www.example.com", "example.com")))
    assert reality_in.flow == "xtls-rprx-vision" and vless_ws.flow == "" and vmess.flow == ""
    tls = Tls("/etc/vpnfleet/tls/node.crt", "/etc/vpnfleet/tls/node.key", "cdn.example.net")
    assert vmess_ws == Inbound("in", "vmess", 8443, "0.0.0.0", profile="vmess-ws-tls", tls=tls, ws_path="/ws-1a2b")
    assert vless_ws == Inbound("in", "vless", 8443, "0.0.0.0", profile="vless-ws-tls", tls=tls, ws_path="/")
    # ws-tls runs on V2Ray 4.34 as well
    assert spec_from_proto(part(inbound("vless-ws-tls"), core="v2ray")).inbounds[0] == vless_ws


@pytest.mark.parametrize("bad, core, reason", [
    (agent_pb2.V2RayInbound(tag="in", protocol="vless", port=1), "xray",
     r"inbound 'in': VLESS without TLS or REALITY is not served"),
    (inbound("vless-reality-vision"), "v2ray", r"profile 'vless-reality-vision' needs the Xray core"),
    (inbound("vless-reality-vision", reality=reality(private_key=PRIVATE_KEY + "=")), "xray",
     r"reality.private_key is not an X25519 private key"),  # padded: only the padding-less form
    (inbound("vless-reality-vision", reality=reality(private_key=PRIVATE_KEY[:-1])), "xray",
     r"reality.private_key is not"),
    (inbound("vless-reality-vision", reality=reality(private_key=PRIVATE_KEY[:-1] + "+")), "xray",
     r"reality.private_key is not"),  # standard base64, not base64url
    (inbound("vless-reality-vision", reality=reality(private_key="")), "xray", r"reality.private_key is required"),
    (inbound("vless-reality-vision", reality=reality(short_ids=["", "xyz1"])), "xray",
     r"reality.short_ids\[1\] is not hex"),
    (inbound("vless-reality-vision", reality=reality(short_ids=["abc"])), "xray",
     r"reality.short_ids\[0\] has 3 hex digits"),
    (inbound("vless-reality-vision", reality=reality(short_ids=["00" * 9])), "xray",
     r"reality.short_ids\[0\] has 18 hex digits"),
    (inbound("vless-reality-vision", reality=reality(short_ids=[])), "xray", r"reality.short_ids: at least one"),
    (inbound("vless-reality-vision", reality=reality(dest="www.example.com")), "xray",
     r"reality.dest 'www.example.com' is not host:port"),
    (inbound("vless-reality-vision", reality=reality(dest="www.example.com:0")), "xray", r"reality.dest"),
    (inbound("vless-reality-vision", reality=reality(server_names=[])), "xray", r"reality.server_names: at least"),
    (inbound("vless-reality-vision", reality=reality(server_names=["a b"])), "xray",
     r"reality.server_names\[0\] 'a b' is not a server name"),
    (agent_pb2.V2RayInbound(tag="in", port=1, profile="vless-reality-vision"), "xray", r"needs reality settings"),
    (inbound("vless-ws-tls", tls=agent_pb2.TlsSettings(certificate_file="node.crt", key_file="/k",
                                                       server_name="a.example")), "xray",
     r"tls.certificate_file 'node.crt' is not an absolute path"),
    (inbound("vmess-ws-tls", tls=agent_pb2.TlsSettings(certificate_file="/c", server_name="a.example")), "v2ray",
     r"tls.key_file is required"),
    (inbound("vmess-ws-tls", tls=agent_pb2.TlsSettings(certificate_file="/c", key_file="/k")), "v2ray",
     r"tls.server_name '' is not a server name"),
    (agent_pb2.V2RayInbound(tag="in", port=1, profile="vless-ws-tls"), "xray", r"needs tls settings"),
    (inbound("vmess-ws-tls", ws_path="ws"), "xray", r"ws_path 'ws' is not a URL path"),
    (inbound("vmess", ws_path="/ws"), "xray", r"ws_path is only for profiles"),
    (inbound("vmess", tls=TLS), "xray", r"tls settings are only for profiles"),
    (inbound("vless-ws-tls", reality=reality()), "xray", r"reality settings are only for profile"),
    (inbound("vless-reality-vision", "vmess"), "xray",
     r"profile 'vless-reality-vision' is vless, not protocol 'vmess'"),
    (inbound("trojan-tls"), "xray", r"profile 'trojan-tls' is not supported"),
])
def test_bad_profiles_are_refused_naming_the_field(bad, core, reason):
    with pytest.raises(ValueError, match=reason) as caught:
        spec_from_proto(part(bad, core=core))
    assert PRIVATE_KEY[:20] not in str(caught.value)  # the key is named, never shown


def test_the_private_key_stays_out_of_reprs_and_redacted_texts():
    spec = spec_from_proto(part(inbound("vless-reality-vision")))
    assert PRIVATE_KEY not in repr(spec) and PRIVATE_KEY not in repr(spec.structure)
    # Xray echoes a key it refuses ('invalid "privateKey": KEY'): what reaches errors and logs is redacted.
    redacted = redact_credentials(f'invalid "privateKey": {PRIVATE_KEY} for {U1}')
    assert redacted == 'invalid "privateKey": <key> for <uuid>'


# -- rendering and reading back --------------------------------------------------------------------------


def render(spec) -> dict:
    return v2config.render(spec, 10085, "/s/access.log", "/s/error.log")


def test_reality_renders_as_xray_takes_it():
    config = render(spec_from_proto(part(inbound("vless-reality-vision"))))
    vless = config["inbounds"][1]
    assert vless["protocol"] == "vless" and vless["settings"] == {
        "clients": [{"id": U1, "email": "alice", "level": 0, "flow": "xtls-rprx-vision"}], "decryption": "none"}
    assert vless["streamSettings"] == {"network": "tcp", "security": "reality", "realitySettings": {
        "show": False, "dest": "www.example.com:443", "xver": 0, "serverNames": ["www.example.com", "example.com"],
        "privateKey": PRIVATE_KEY, "shortIds": ["", "0123abcd"]}}
    assert config["vpnfleet"] == {"core": "xray"}  # which binary a restart from disk runs


def test_ws_tls_renders_as_both_cores_take_it():
    for profile, protocol in (("vmess-ws-tls", "vmess"), ("vless-ws-tls", "vless")):
        config = render(spec_from_proto(part(inbound(profile, ws_path="/ws-1a2b"), core="v2ray")))
        item = config["inbounds"][1]
        assert item["protocol"] == protocol and "flow" not in item["settings"]["clients"][0]
        assert item["streamSettings"] == {
            "network": "ws", "security": "tls",
            "tlsSettings": {"serverName": "cdn.example.net", "certificates": [
                {"certificateFile": "/etc/vpnfleet/tls/node.crt", "keyFile": "/etc/vpnfleet/tls/node.key"}]},
            "wsSettings": {"path": "/ws-1a2b"}}
        assert "vpnfleet" not in config


@pytest.mark.parametrize("profile, core", [
    ("", "v2ray"), ("vmess", "xray"), ("vless-reality-vision", "xray"),
    ("vmess-ws-tls", "v2ray"), ("vmess-ws-tls", "xray"), ("vless-ws-tls", "v2ray"), ("vless-ws-tls", "xray"),
])
def test_parse_reads_every_profile_back_exactly(profile, core):
    desired = part(inbound(profile, "vmess" if profile == "" else ""),
                   agent_pb2.V2RayInbound(tag="plain", protocol="vmess", port=9000), core=core)
    desired.egress.block_bittorrent = True
    spec = spec_from_proto(desired)
    parsed, port = v2config.parse(v2config.dumps(render(spec)))
    assert (parsed, port) == (spec, 10085) and parsed.structure == spec.structure
    assert parsed.inbounds[0].reality == spec.inbounds[0].reality  # the key too (dataclass eq compares it)


def test_configs_from_before_profiles_and_cores_still_parse():
    # An agent before issue 9 wrote a plain VLESS inbound and no core marker: it reads back as such (V2Ray,
    # profile ""), which no desired spec equals, so that V2Ray is restarted into a served profile.
    old = {"log": {"access": "none", "error": "e", "loglevel": "warning"},
           "inbounds": [{"tag": "api", "listen": "127.0.0.1", "port": 10085, "protocol": "dokodemo-door",
                         "settings": {"address": "127.0.0.1"}},
                        {"tag": "vm", "listen": "0.0.0.0", "port": 11994, "protocol": "vmess",
                         "settings": {"clients": [{"id": U1, "alterId": 0, "email": "alice", "level": 0}]}},
                        {"tag": "vl", "listen": "0.0.0.0", "port": 11995, "protocol": "vless",
                         "settings": {"clients": [{"id": U1, "email": "alice", "level": 0}], "decryption": "none"}}]}
    spec, port = v2config.parse(json.dumps(old))
    assert port == 10085 and spec.core == "v2ray" and spec.egress is None
    assert spec.inbounds == (Inbound("vm", "vmess", 11994, "0.0.0.0"), Inbound("vl", "vless", 11995, "0.0.0.0"))
    # render(parse(x)) renders the same inbounds again (a rollback to such a last good config is faithful)
    assert render(spec)["inbounds"][1:] == old["inbounds"][1:]
    vmess_only = spec_from_proto(agent_pb2.V2RayConfig(
        inbounds=[agent_pb2.V2RayInbound(tag="vm", protocol="vmess", port=11994)],
        users=[agent_pb2.V2RayUser(email="alice", uuid=U1)]))
    assert vmess_only.inbounds[0] == spec.inbounds[0]  # VMess: no restart for the upgrade itself
    old["inbounds"][2]["streamSettings"] = {"network": "grpc", "security": "tls"}
    with pytest.raises(ValueError, match="transport grpc/tls is not one the agent writes"):
        v2config.parse(json.dumps(old))


# -- the API: service and type names per core (a stand-in server records what it is sent) -----------------


class Recorder:
    """A gRPC server on 127.0.0.1 that accepts the agent's calls under one core's service names."""

    def __init__(self, core) -> None:
        self.core = core
        self.calls: list[tuple[str, object]] = []

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def record(name, answer):
            def handle(request, context):
                self.calls.append((name, request))
                return answer
            return handle

        alter = grpc.unary_unary_rpc_method_handler(
            record("AlterInbound", handler.AlterInboundResponse()),
            request_deserializer=handler.AlterInboundRequest.FromString,
            response_serializer=handler.AlterInboundResponse.SerializeToString)
        query = grpc.unary_unary_rpc_method_handler(
            record("QueryStats", stats.QueryStatsResponse(stat=[stats.Stat(name="user>>>a>>>traffic>>>uplink",
                                                                            value=7)])),
            request_deserializer=stats.QueryStatsRequest.FromString,
            response_serializer=stats.QueryStatsResponse.SerializeToString)
        sys_stats = grpc.unary_unary_rpc_method_handler(
            record("GetSysStats", stats.SysStatsResponse()), request_deserializer=stats.SysStatsRequest.FromString,
            response_serializer=stats.SysStatsResponse.SerializeToString)
        return [grpc.method_handlers_generic_handler(self.core.handler_service, {"AlterInbound": alter}),
                grpc.method_handlers_generic_handler(self.core.stats_service,
                                                     {"QueryStats": query, "GetSysStats": sys_stats})]


@pytest.mark.parametrize("core", [V2RAY, XRAY], ids=lambda core: core.name)
async def test_the_api_calls_each_core_by_its_own_names(core):
    recorder = Recorder(core)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers(recorder.handlers())
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with V2RayApi(port, core=core) as api:
            assert await api.alive()
            assert await api.add_user("vr", "vless", "alice", U1, flow="xtls-rprx-vision") is True
            assert await api.add_user("vm", "vmess", "bob", U1) is True
            assert await api.remove_user("vm", "bob") is True
            assert await api.query_stats("user>>>", reset=True) == {"user>>>a>>>traffic>>>uplink": 7}
        other = V2RAY if core is XRAY else XRAY
        async with V2RayApi(port, core=other) as api:  # the other core's names: unimplemented here
            assert not await api.alive()
    finally:
        await server.stop(None)
    names = [name for name, _request in recorder.calls]
    assert names == ["GetSysStats", "AlterInbound", "AlterInbound", "AlterInbound", "QueryStats"]
    add_vless, add_vmess, remove = (request for name, request in recorder.calls if name == "AlterInbound")
    assert add_vless.tag == "vr" and add_vless.operation.type == core.add_user_type
    user = handler.AddUserOperation.FromString(add_vless.operation.value).user
    assert (user.email, user.account.type) == ("alice", core.account_types["vless"])
    assert handler.VlessAccount.FromString(user.account.value) == handler.VlessAccount(id=U1, flow="xtls-rprx-vision")
    account = handler.AddUserOperation.FromString(add_vmess.operation.value).user.account
    assert account.type == core.account_types["vmess"]
    # Xray's VMess Account has no field 2 (alter_id): 0 is not on the wire, so the bytes suit both cores.
    assert account.value == handler.VmessAccount(id=U1).SerializeToString()
    assert remove.operation.type == core.remove_user_type
    assert handler.RemoveUserOperation.FromString(remove.operation.value).email == "bob"


# -- files the data-plane user must read -------------------------------------------------------------------


def test_unreadable_tls_files_are_named(tmp_path):
    directory = tmp_path / "tls"
    directory.mkdir()
    os.chmod(directory, 0o755)
    os.chmod(tmp_path, 0o755)
    cert, key = directory / "node.crt", directory / "node.key"
    cert.write_text("cert")
    key.write_text("key")
    os.chmod(cert, 0o644)
    os.chmod(key, 0o600)
    stranger = DataplaneUser("vpnfleet-dp", uid=os.getuid() + 12345, gid=os.getgid() + 12345, group="vpnfleet-dp")
    assert process.unreadable_by([str(cert)], stranger) is None
    problem = process.unreadable_by([str(cert), str(key)], stranger)
    assert problem.startswith(f"{key}: vpnfleet-dp may not read it") and "group vpnfleet-dp" in problem
    assert "No such file" in process.unreadable_by([str(directory / "missing.key")], stranger)
    os.chmod(directory, 0o700)
    assert "may not search" in process.unreadable_by([str(cert)], stranger)
    os.chmod(directory, 0o755)
    link = directory / "live.key"  # ACME clients link live/ names to archive/ files: the target counts
    link.symlink_to(key)
    assert process.unreadable_by([str(link)], stranger).startswith(f"{link}: vpnfleet-dp may not read it")
    if os.geteuid() == 0:  # as operators are told: group of the data-plane user, 0640
        os.chown(key, 0, stranger.gid)
        os.chmod(key, 0o640)
        assert process.unreadable_by([str(key), str(link)], stranger) is None
    # Without a data-plane user (the agent is not root) the core runs as the agent: its own access counts.
    assert process.unreadable_by([str(key), str(link)], None) is None
    assert "no such file" in process.unreadable_by([str(directory / "missing.key")], None)


def test_xray_access_log_sources_are_masked():
    line = "from 203.0.113.7:51234 accepted tcp:example.com:443 [vl -> direct] email: alice"
    assert _mask_sources(line) == "from 203.0.x.x accepted tcp:example.com:443 [vl -> direct] email: alice"
    assert _mask_sources("from tcp:[2001:db8:5::1]:46078 accepted tcp:x:1") == \
        "from tcp:2001:db8:5::/48 accepted tcp:x:1"
    assert _mask_sources("203.0.113.7:51234 accepted tcp:x:1 email: a") == "203.0.x.x accepted tcp:x:1 email: a"


def test_a_config_for_an_unknown_core_is_not_read_as_one():
    config = render(spec_from_proto(part(inbound("vmess"))))
    config["vpnfleet"] = {"core": "xray2"}  # e.g. written by a newer agent
    with pytest.raises(ValueError, match="core 'xray2' is not one this agent knows"):
        v2config.parse(json.dumps(config))
