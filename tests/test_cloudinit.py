"""Rendering cloud-init user data from cloud-init/user-data.yaml, and reading it back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.config import DEFAULT_CONFIG_PATH, AgentConfig
from controller.cloudinit import (
    CloudInitError,
    agent_config_from_user_data,
    package_url_from_user_data,
    render_user_data,
)
from controller.settings import Settings

TEMPLATE = Settings().cloud_init_template
SHA = "ab" * 32
FILENAME = "vpnfleet_agent-0.1.0-py3-none-any.whl"
URL = "https://ctl.example:8443/api/v1/agent/package?token=tok-123"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"


def config(**overrides: object) -> AgentConfig:
    values = dict(grpc_addr="ctl.example:50051", enroll_addr="ctl.example:50052", ca_cert_pem=PEM,
                  enrollment_token="tok-123", node_name="vpn-1")
    values.update(overrides)
    return AgentConfig(**values)  # type: ignore[arg-type]


def render(cfg: AgentConfig | None = None, url: str = URL, template: Path = TEMPLATE) -> str:
    return render_user_data(cfg or config(), url, SHA, FILENAME, template)


def written(user_data: str, path: str) -> dict:
    return next(f for f in yaml.safe_load(user_data)["write_files"] if f["path"] == path)


def test_rendered_user_data_passes_cloud_init_schema(tmp_path: Path) -> None:
    if shutil.which("cloud-init") is None:
        pytest.skip("the cloud-init command is not installed (Debian package cloud-init)")
    path = tmp_path / "user-data"
    path.write_text(render())
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_round_trip() -> None:
    cfg = config(log_level="debug", metrics_interval_seconds=30)
    user_data = render(cfg)
    assert user_data.startswith("#cloud-config\n")
    assert agent_config_from_user_data(user_data) == cfg
    assert package_url_from_user_data(user_data) == (URL, SHA)


@pytest.mark.parametrize("token", [
    "a: b\n- c", "'\"}{][,&*!|>%@`#", "${PACKAGE_URL}", "x\nruncmd: [[rm, -rf, /]]", "  lead and trail  ",
])
def test_yaml_special_values_render_safely(token: str) -> None:
    cfg = config(enrollment_token=token, node_name="#not a comment: {x}")
    user_data = render(cfg, url=URL + "&x='1'; rm -rf /")
    doc = yaml.safe_load(user_data)
    assert list(doc) == list(yaml.safe_load(TEMPLATE.read_text()))  # no key injected
    assert agent_config_from_user_data(user_data) == cfg
    assert package_url_from_user_data(user_data)[0] == URL + "&x='1'; rm -rf /"


def test_agent_config_file_is_private() -> None:
    entry = written(render(), DEFAULT_CONFIG_PATH)
    assert entry["permissions"] == "0600"
    assert entry["owner"] == "root:root"


def test_runcmd_verifies_the_package_before_installing() -> None:
    doc = yaml.safe_load(render())
    runcmd = doc["runcmd"]
    assert runcmd[0] == "set -eu"  # a failed check stops the script
    commands = [cmd[0] if isinstance(cmd, list) else cmd for cmd in runcmd]
    curl, check = commands.index("curl"), commands.index("sha256sum")
    pip = next(i for i, cmd in enumerate(runcmd) if isinstance(cmd, list) and cmd[:2] == [
        "/opt/vpnfleet/venv/bin/pip", "install"])
    assert curl < check < pip
    assert "--fail" in runcmd[curl] and f"/opt/vpnfleet/dist/{FILENAME}" in runcmd[curl]
    sums = written(render(), runcmd[check][-1])
    assert sums["content"] == f"{SHA}  /opt/vpnfleet/dist/{FILENAME}\n"
    assert runcmd[-1] == ["systemctl", "enable", "--now", "vpnfleet-agent.service"]
    # Debian's own v2ray service (the package's sample config, a published UUID) never runs on a node
    assert ["systemctl", "disable", "--now", "v2ray.service"] in runcmd


def test_systemd_unit() -> None:
    unit = written(render(), "/etc/systemd/system/vpnfleet-agent.service")["content"]
    lines = unit.splitlines()
    for line in ("Restart=on-failure", "NoNewPrivileges=yes",
                 "ExecStart=/opt/vpnfleet/venv/bin/vpnfleet-agent --config /etc/vpnfleet/agent.yaml"):
        assert line in lines
    prevent = next(line for line in lines if line.startswith("RestartPreventExitStatus="))
    assert "3" in prevent.split("=", 1)[1].split()  # 3: permanent authentication failure


def test_the_data_plane_user_is_an_unprivileged_system_user() -> None:
    users = yaml.safe_load(render())["users"]
    assert users[0] == "default"  # the image's normal login user stays
    entry = next(u for u in users if isinstance(u, dict) and u["name"] == "vpnfleet-dp")
    assert entry["system"] is True and entry["lock_passwd"] is True and entry["no_create_home"] is True
    assert entry["shell"] == "/usr/sbin/nologin" and entry["homedir"] == "/nonexistent"
    assert not {"sudo", "groups", "ssh_authorized_keys", "passwd"} & set(entry)


def test_the_agent_stays_root_and_only_its_state_directory_is_searchable() -> None:
    unit = written(render(), "/etc/systemd/system/vpnfleet-agent.service")["content"]
    lines = unit.splitlines()
    assert not any(line.startswith(("User=", "DynamicUser=")) for line in lines)  # WireGuard, iptables: root
    assert "StateDirectoryMode=0701" in lines  # search only: vpnfleet-dp reaches state_dir/v2ray/, lists nothing
    assert "firewall" in unit and "vpnfleet-dp" in unit  # the comment says why it stays root and who is not


def test_runcmd_takes_debian_s_file_capability_off_v2ray(tmp_path: Path) -> None:
    """Debian's postinst runs `setcap cap_net_bind_service+ep /usr/bin/v2ray`: runcmd removes it before the agent
    starts (the agent grants the capability itself, only when a port needs it). Run the step on a copy."""
    runcmd = yaml.safe_load(render())["runcmd"]
    step = next(cmd for cmd in runcmd if isinstance(cmd, str) and "setcap -r /usr/bin/v2ray" in cmd)
    assert runcmd.index(step) < runcmd.index(["systemctl", "enable", "--now", "vpnfleet-agent.service"])
    assert "libcap2-bin" in yaml.safe_load(render())["packages"]  # getcap, setcap
    if os.geteuid() != 0 or shutil.which("setcap") is None or shutil.which("getcap") is None:
        pytest.skip("running the step needs root and getcap/setcap (Debian package libcap2-bin)")
    binary = tmp_path / "v2ray"
    binary.write_bytes(b"#!/bin/sh\n")
    script = f"set -eu\n{step.replace('/usr/bin/v2ray', str(binary))}\n"
    subprocess.run(["setcap", "cap_net_bind_service+ep", str(binary)], check=True)
    for _ in range(2):  # with the capability, then without it (the step must not fail then either)
        subprocess.run(["sh", "-c", script], check=True, timeout=30)
        assert subprocess.run(["getcap", str(binary)], capture_output=True, text=True).stdout.strip() == ""


def test_packages() -> None:
    packages = yaml.safe_load(render())["packages"]
    assert {"python3", "python3-venv", "ca-certificates", "curl", "v2ray", "wireguard-tools",
            "wireguard-go"} <= set(packages)


def test_unknown_placeholder_is_an_error(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("#cloud-config\nruncmd:\n  - [echo, '${NOT_A_THING}']\n")
    with pytest.raises(CloudInitError, match="NOT_A_THING"):
        render(template=template)


@pytest.mark.parametrize("url, sha, filename", [
    ("file:///etc/passwd", SHA, FILENAME),
    (URL, "not-a-sha", FILENAME),
    (URL, SHA, "x.whl\nevil"),
    (URL, SHA, "../x.whl"),
])
def test_bad_values_are_refused(url: str, sha: str, filename: str) -> None:
    with pytest.raises(CloudInitError):
        render_user_data(config(), url, sha, filename, TEMPLATE)


def test_reading_user_data_without_agent_config() -> None:
    with pytest.raises(CloudInitError, match="does not write"):
        agent_config_from_user_data("#cloud-config\nruncmd: []\n")
    with pytest.raises(CloudInitError, match="cloud-config"):
        agent_config_from_user_data("#!/bin/sh\necho hi\n")
