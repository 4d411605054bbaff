from __future__ import annotations

from pathlib import Path

import pytest

from controller.settings import SettingsError, load_settings


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
    ("", {"VPNFLEET_GRPC_ADDR": "localhost"}, "grpc_addr"),
])
def test_bad_settings_are_named(tmp_path: Path, text: str, env: dict, message: str) -> None:
    cfg = tmp_path / "conf.yaml"
    cfg.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(cfg, env=env)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "nope.yaml", env={})
