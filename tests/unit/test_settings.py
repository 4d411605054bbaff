from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from controller.settings import ENROLLMENT_TTL_MARGIN, GiB, Settings, SettingsError, TlsSettings, load_settings


def test_defaults_give_sqlite_and_local(tmp_path: Path) -> None:
    s = load_settings(env={})
    assert s.http_addr == "127.0.0.1:8080" and s.grpc_addr == "127.0.0.1:50051"
    assert s.db_url == "sqlite+aiosqlite:///data/vpnfleet.db"
    assert [r.code for r in s.all_regions()] == ["local"]
    assert s.v2ray_port == 11994 and s.instance_sync_interval == 60 and s.instance_wait_timeout == 300


def test_seed000_sections_and_env_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "conf.yaml"
    cfg.write_text("""
server: {http_addr: "0.0.0.0:9000"}
database: {url: "postgresql+asyncpg://u:p@db/vpnfleet"}
aws:
  access_key: AK
  secret_key: SK
  regions:
    ap-east-1: {name: 香港, template_id: lt-1}
    us-west-2: {name: 美西, template_id: lt-2, instance_type: t3.small}
v2ray: {port: 12000, local_config_path: /etc/v2ray/config.json}
logging: {level: debug}
scheduler: {instance_sync_interval: 30, instance_wait_timeout: 120}
""")
    s = load_settings(cfg, env={"VPNFLEET_GRPC_ADDR": "0.0.0.0:6000", "VPNFLEET_ADVERTISE_ADDR": "vpn.example.com"})
    assert s.http_addr == "0.0.0.0:9000" and s.db_url.startswith("postgresql+asyncpg://")
    assert [(r.code, r.name, r.template_id) for r in s.regions] == [("ap-east-1", "香港", "lt-1"),
                                                                  ("us-west-2", "美西", "lt-2")]
    assert s.region("us-west-2").instance_type == "t3.small" and s.region("local").provider == "local"
    assert s.v2ray_port == 12000 and s.log_level == "debug" and s.instance_sync_interval == 30
    assert s.advertised_grpc == "vpn.example.com:6000" and s.advertised_enroll == "vpn.example.com:50052"


@pytest.mark.parametrize("text,env,message", [
    ("scheduler: {instance_sync_interval: -1}", {}, "instance_sync_interval"),
    ("scheduler: {instance_wait_timeout: soon}", {}, "instance_wait_timeout"),
    ("aws: {regions: [a, b]}", {}, "aws.regions"),
    ("aws: {regions: {local: {name: x}}}", {}, "reserved"),
    ("logging: {level: loud}", {}, "logging.level"),
    ("server: [1]", {}, "section 'server'"),
    ("- just a list", {}, "mapping"),
    ("", {"VPNFLEET_GRPC_ADDR": "localhost:notaport"}, "bad port"),
    # the key of the file, and the variable the value came from (was: the Settings field, "grpc_addr")
    ("", {"VPNFLEET_GRPC_ADDR": "localhost"}, r"'grpc\.addr' \(from \$VPNFLEET_GRPC_ADDR\)"),
])
def test_bad_settings_are_named(tmp_path: Path, text: str, env: dict, message: str) -> None:
    cfg = tmp_path / "conf.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(cfg, env=env)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", env={})


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    cfg = tmp_path / "conf.yaml"
    cfg.write_text(text)
    return load_settings(cfg, env=env or {})


@pytest.mark.parametrize("text,message", [
    ("servr: {http_addr: x}", "unknown section 'servr' (did you mean 'server'?)"),
    ("server: {tls: {cert_fil: /c.pem}}", "unknown setting 'server.tls.cert_fil' (did you mean 'cert_file'?)"),
    ("server: {port: 8080}", "unknown setting 'server.port'"),
    ("v2ray: {reality: {dst: 'www.apple.com:443'}}", "unknown setting 'v2ray.reality.dst' (did you mean 'dest'?)"),
    ("v2ray: {xray_release: {url: 'https://m.example/x', sha256: '" + "a" * 64 + "', version: 1.2.3, os: linux}}",
     "unknown setting 'v2ray.xray_release.os'"),
    ("aws: {regions: {us-east-1: {nmae: East}}}", "unknown setting 'aws.regions.us-east-1.nmae' (did you mean 'name'?)"),
    ("limits: {max_body: 10}", "unknown setting 'limits.max_body' (did you mean 'max_body_bytes'?)"),
    ("telemetry: {heartbeat: 5}", "unknown setting 'telemetry.heartbeat'"),
])
def test_unknown_keys_are_errors_naming_the_whole_key(tmp_path: Path, text: str, message: str) -> None:
    """Issue 10: a typo is not silently ignored (server.tls.cert_fil would have served plain HTTP)."""
    with pytest.raises(SettingsError) as err:
        load(tmp_path, text)
    assert message in str(err.value)


def test_the_edge_sections_and_their_variables(tmp_path: Path) -> None:
    s = load(tmp_path, """
server: {allow_insecure_public_url: true, tls: {enabled: true, cert_file: /etc/tls/api.pem, key_file: /etc/tls/api.key}}
limits: {max_body_bytes: 2097152, max_json_depth: 64, header_timeout: 5, idle_timeout: 2.5, max_connections: 50,
         auth_failures_per_window: 5, auth_failure_window: 30}
audit: {retention_days: 30}
pki: {agent_cert_days: 30}
nodes: {max_per_region: 7, creations_per_minute: 2}
enrollment: {token_ttl: 900}
""")
    assert (s.tls_enabled, s.tls_cert_file, s.tls_key_file, s.allow_insecure_public_url) == \
        (True, "/etc/tls/api.pem", "/etc/tls/api.key", True)
    assert (s.max_body_bytes, s.max_json_depth, s.header_timeout, s.idle_timeout, s.max_connections,
            s.auth_failures_per_window, s.auth_failure_window) == (2 * 1024 * 1024, 64, 5.0, 2.5, 50, 5, 30.0)
    assert (s.audit_retention_days, s.agent_cert_days, s.max_nodes_per_region, s.node_creations_per_minute) == \
        (30, 30, 7, 2)
    assert s.token_ttl == 900 and s.http_url == "https://127.0.0.1:8080"
    env = {"VPNFLEET_TLS_ENABLED": "false", "VPNFLEET_TLS_CERT_FILE": "/a.pem", "VPNFLEET_TLS_KEY_FILE": "/a.key",
           "VPNFLEET_ALLOW_INSECURE_PUBLIC_URL": "no", "VPNFLEET_MAX_BODY_BYTES": "1000",
           "VPNFLEET_MAX_JSON_DEPTH": "8", "VPNFLEET_HEADER_TIMEOUT": "1.5", "VPNFLEET_IDLE_TIMEOUT": "3",
           "VPNFLEET_MAX_CONNECTIONS": "9", "VPNFLEET_AUTH_FAILURES_PER_WINDOW": "4",
           "VPNFLEET_AUTH_FAILURE_WINDOW": "10", "VPNFLEET_AUDIT_RETENTION_DAYS": "400",
           "VPNFLEET_AGENT_CERT_DAYS": "825", "VPNFLEET_MAX_NODES_PER_REGION": "3",
           "VPNFLEET_NODE_CREATIONS_PER_MINUTE": "1", "VPNFLEET_ENROLLMENT_TOKEN_TTL": "60"}
    e = load_settings(env=env)
    assert (e.tls_enabled, e.tls_cert_file, e.tls_key_file, e.allow_insecure_public_url) == \
        (False, "/a.pem", "/a.key", False)
    assert (e.max_body_bytes, e.max_json_depth, e.header_timeout, e.idle_timeout, e.max_connections,
            e.auth_failures_per_window, e.auth_failure_window, e.audit_retention_days, e.agent_cert_days,
            e.max_nodes_per_region, e.node_creations_per_minute, e.token_ttl) == \
        (1000, 8, 1.5, 3.0, 9, 4, 10.0, 400, 825, 3, 1, 60.0)


def test_token_ttl_is_derived_from_the_wait_timeout_unless_set(tmp_path: Path) -> None:
    assert load_settings(env={}).token_ttl == 300 + ENROLLMENT_TTL_MARGIN
    assert load(tmp_path, "scheduler: {instance_wait_timeout: 60}\nenrollment: {token_ttl: 0}").token_ttl == \
        60 + ENROLLMENT_TTL_MARGIN


@pytest.mark.parametrize("text,env,message", [
    ("limits: {max_body_bytes: 0}", {}, "'limits.max_body_bytes': Input should be greater than or equal to 1"),
    (f"limits: {{max_body_bytes: {2 * GiB}}}", {}, f"'limits.max_body_bytes': Input should be less than or equal "
                                                  f"to {GiB}"),
    ("limits: {max_json_depth: 1001}", {}, "'limits.max_json_depth'"),
    ("limits: {header_timeout: 0}", {}, "'limits.header_timeout': Input should be greater than 0"),
    ("limits: {idle_timeout: -1}", {}, "'limits.idle_timeout'"),
    ("limits: {max_connections: 0}", {}, "'limits.max_connections'"),
    ("limits: {auth_failure_window: 100000}", {}, "'limits.auth_failure_window'"),
    ("audit: {retention_days: 0}", {}, "'audit.retention_days'"),
    ("pki: {agent_cert_days: 826}", {}, "'pki.agent_cert_days': Input should be less than or equal to 825"),
    ("nodes: {max_per_region: 0}", {}, "'nodes.max_per_region'"),
    ("nodes: {creations_per_minute: many}", {}, "'nodes.creations_per_minute'"),
    ("enrollment: {token_ttl: -5}", {}, "'enrollment.token_ttl'"),
    ("server: {tls: {enabled: maybe}}", {}, "'server.tls.enabled'"),
    ("", {"VPNFLEET_TLS_ENABLED": "maybe"}, "'server.tls.enabled' (from $VPNFLEET_TLS_ENABLED)"),
    ("", {"VPNFLEET_AGENT_CERT_DAYS": "0"}, "'pki.agent_cert_days' (from $VPNFLEET_AGENT_CERT_DAYS)"),
    ("v2ray: {port: true}", {}, "'v2ray.port': must be a number, not true/false"),
    ("v2ray: {port: 70000}", {}, "'v2ray.port'"),
    ("v2ray: {port: 11995}", {}, "v2ray.port (VMess) and v2ray.vless_port must differ"),
    ("egress: {allowed_cidrs: [10.0.0.0/8, 127.0.0.1/32]}", {}, "'egress.allowed_cidrs': 127.0.0.1/32 would open"),
    ("", {"VPNFLEET_EGRESS_BLOCKED_CIDRS": "198.51.100.0/24,nope"},
     "'egress.blocked_cidrs[1]' (from $VPNFLEET_EGRESS_BLOCKED_CIDRS): 'nope' is not a CIDR"),
    ("server: {public_url: 'ftp://x'}", {}, "'server.public_url': must be an http(s) URL"),
    ("server: {advertise_addr: 'vpn.example.com:x'}", {}, "'server.advertise_addr': bad port"),
    ("v2ray: {xray_release: {url: 'https://m.example/x', sha256: nope, version: 1.2.3}}", {},
     "'v2ray.xray_release.sha256': must be the binary's SHA-256"),
    ("v2ray: {tls: {domain: a.example, certificate_file: /c.pem}}", {}, "setting 'v2ray.tls.key_file' is required"),
    ("aws: {regions: {US_East: {}}}", {}, "'aws.regions.US_East': region code 'US_East' must be lower-case"),
    ("v2ray: {reality: [a]}", {}, "setting 'v2ray.reality' must be a mapping"),
])
def test_every_bad_value_names_its_key(tmp_path: Path, text: str, env: dict, message: str) -> None:
    with pytest.raises(SettingsError) as err:
        load(tmp_path, text, env)
    assert message in str(err.value)


@pytest.mark.parametrize("text,env", [
    ("server: {tls: {cert_file: /etc/tls/api.pem}}", {}),
    ("", {"VPNFLEET_TLS_KEY_FILE": "/etc/tls/api.key"}),
])
def test_tls_cert_and_key_go_together(tmp_path: Path, text: str, env: dict) -> None:
    with pytest.raises(SettingsError, match="server.tls.cert_file and server.tls.key_file go together"):
        load(tmp_path, text, env)


def test_secrets_are_never_echoed(tmp_path: Path) -> None:
    for text, env, secret in [("aws: {secret_key: 98765432}", {}, "98765432"),
                              ("", {"VPNFLEET_DATABASE_URL": "postgresql://u:hunter2@db:notaport/x"}, "hunter2"),
                              ("database: {url: 'hunter2'}", {}, "hunter2")]:
        with pytest.raises(SettingsError) as err:
            load(tmp_path, text, env)
        assert secret not in str(err.value) and ("aws.secret_key" in str(err.value) or "database.url" in str(err.value))
    assert "hunter2" not in repr(Settings(database_url="postgresql://u:hunter2@db/x", aws_secret_key="hunter2"))


def test_null_and_empty_keep_the_defaults(tmp_path: Path) -> None:
    s = load(tmp_path, "server:\nv2ray: {port: null, reality: {dest: '', server_names: []}}\naws: {regions: {r1: }}")
    assert s.v2ray_port == 11994 and s.reality_dest == "www.microsoft.com:443"
    assert [(r.code, r.name, r.provider) for r in s.regions] == [("r1", "r1", "ec2")]
    assert load(tmp_path, "", {"VPNFLEET_HTTP_ADDR": "", "VPNFLEET_LOG_LEVEL": ""}) == Settings()


def test_values_are_normalised(tmp_path: Path) -> None:
    s = load(tmp_path, """
logging: {level: DEBUG}
v2ray: {core: ' XRAY ', reality: {dest: 'www.apple.com:443', server_names: 'WWW.Apple.com, images.apple.com'}}
egress: {blocked_cidrs: '198.51.100.7, 2001:db8::1/32'}
""", {"VPNFLEET_V2RAY_ACCESS_LOG": "on", "VPNFLEET_LOCAL_ENABLED": "0"})
    assert (s.log_level, s.v2ray_core, s.reality_server_names) == ("debug", "xray", ("www.apple.com", "images.apple.com"))
    assert s.egress_blocked_cidrs == ("198.51.100.7/32", "2001:db8::/32")
    assert s.v2ray_access_log is True and s.local_enabled is False and [r.code for r in s.all_regions()] == []


def test_settings_built_by_keyword_are_checked_frozen_and_replaceable(tmp_path: Path) -> None:
    """Tests and callers build Settings(...) directly: the same bounds apply, and it stays immutable."""
    s = Settings(data_dir=tmp_path, v2ray_port=12000)  # type: ignore[arg-type]
    assert s.data_dir == tmp_path and s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'vpnfleet.db'}"
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.v2ray_port = 1  # type: ignore[misc]
    assert dataclasses.replace(s, agent_cert_days=30).agent_cert_days == 30
    for bad in ({"v2ray_port": 0}, {"agent_cert_days": 826}, {"max_body_bytes": 2 * GiB}, {"log_level": "loud"},
                {"egress_allowed_cidrs": ("127.0.0.0/8",)}, {"v2ray_vless_port": 11994}, {"colour": "red"},
                {"tls_cert_file": "/c.pem"}):
        with pytest.raises(ValueError):
            Settings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="differ"):
        TlsSettings(domain="a.example", certificate_file="/c", key_file="/k", vmess_port=2053)
    assert load_settings(env={}) == Settings()  # the file's defaults are Settings' own
