"""Rendering cloud-init user data from cloud-init/user-data.yaml, and reading it back."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from agent.config import DEFAULT_CONFIG_PATH, AgentConfig
from controller.cloudinit import (
    DOWNLOAD_CA_PATH,
    SYSTEM_CA_PATH,
    XRAY_PATH,
    CloudInitError,
    Download,
    XrayDownload,
    agent_config_from_user_data,
    download_ca_from_user_data,
    package_url_from_user_data,
    render_user_data,
    xray_download_from_user_data,
)
from controller.settings import Settings

TEMPLATE = Settings().cloud_init_template
SHA = "ab" * 32
FILENAME = "vpnfleet_agent-0.1.0-py3-none-any.whl"
URL = f"https://ctl.example:8443/agent/package/{FILENAME}"
PEM = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n"
#: the controller's CA its downloads are pinned to (a stand-in PEM: the document only carries it)
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIBdDCCARqgAwIBAgIU\n-----END CERTIFICATE-----\n"
REQUIREMENTS = Download(url="https://ctl.example:8443/agent/package/vpnfleet_agent-0.1.0-requirements.txt",
                        sha256="ef" * 32, filename="vpnfleet_agent-0.1.0-requirements.txt")


def config(**overrides: object) -> AgentConfig:
    values = dict(grpc_addr="ctl.example:50051", enroll_addr="ctl.example:50052", ca_cert_pem=PEM,
                  enrollment_token="tok-123", node_name="vpn-1")
    values.update(overrides)
    return AgentConfig(**values)  # type: ignore[arg-type]


XRAY = XrayDownload(url="https://ctl.example:8443/agent/package/xray-26.3.27-linux-amd64",
                    sha256="cd" * 32, filename="xray-26.3.27-linux-amd64", arch="amd64")
AGENT_START = ["systemctl", "enable", "--now", "vpnfleet-agent.service"]


def render(cfg: AgentConfig | None = None, url: str = URL, template: Path = TEMPLATE,
           xray: XrayDownload | None = None, ca: str | None = CA_PEM,
           requirements: Download = REQUIREMENTS) -> str:
    return render_user_data(cfg or config(), url, SHA, FILENAME, template, xray=xray, requirements=requirements,
                            download_ca_pem=ca)


def curls(user_data: str) -> list[list[str]]:
    return [cmd for cmd in yaml.safe_load(user_data)["runcmd"] if isinstance(cmd, list) and cmd[0] == "curl"]


def option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def written(user_data: str, path: str) -> dict:
    return next(f for f in yaml.safe_load(user_data)["write_files"] if f["path"] == path)


@pytest.mark.parametrize("xray", [None, XRAY], ids=["v2ray-only", "with-xray"])
def test_rendered_user_data_passes_cloud_init_schema(tmp_path: Path, xray: XrayDownload | None) -> None:
    if shutil.which("cloud-init") is None:
        pytest.skip("the cloud-init command is not installed (Debian package cloud-init)")
    path = tmp_path / "user-data"
    path.write_text(render(xray=xray))
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
    user_data = render(cfg, url=URL + "?x='1'; rm -rf /")
    doc = yaml.safe_load(user_data)
    assert list(doc) == list(yaml.safe_load(TEMPLATE.read_text()))  # no key injected
    assert agent_config_from_user_data(user_data) == cfg
    assert package_url_from_user_data(user_data)[0] == URL + "?x='1'; rm -rf /"


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
    assert sums["content"] == (f"{SHA}  /opt/vpnfleet/dist/{FILENAME}\n"
                               f"{REQUIREMENTS.sha256}  /opt/vpnfleet/dist/{REQUIREMENTS.filename}\n")
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


def test_xray_download_is_verified_and_installed_before_the_agent_starts() -> None:
    user_data = render(xray=XRAY)
    doc = yaml.safe_load(user_data)
    runcmd = doc["runcmd"]
    download = next(i for i, cmd in enumerate(runcmd) if isinstance(cmd, list) and cmd[0] == "curl"
                    and XRAY.url in cmd)
    check = runcmd.index(["sha256sum", "--check", "--strict", f"/opt/vpnfleet/dist/{XRAY.filename}.sha256"])
    install = next(i for i, cmd in enumerate(runcmd) if isinstance(cmd, list) and cmd[-1] == XRAY_PATH)
    assert download < check < install < runcmd.index(AGENT_START)
    assert runcmd[download][runcmd[download].index("--output") + 1] == f"/opt/vpnfleet/dist/{XRAY.filename}"
    assert "--fail" in runcmd[download]
    assert runcmd[install][-3:] == [XRAY.arch, f"/opt/vpnfleet/dist/{XRAY.filename}", XRAY_PATH]
    sums = written(user_data, f"/opt/vpnfleet/dist/{XRAY.filename}.sha256")
    assert sums["content"] == f"{XRAY.sha256}  /opt/vpnfleet/dist/{XRAY.filename}\n"
    assert sums["permissions"] == "0644" and sums["owner"] == "root:root"
    # read back: what a test playing cloud-init downloads; the agent package is still found as before
    assert xray_download_from_user_data(user_data) == XRAY
    assert package_url_from_user_data(user_data) == (URL, SHA)
    assert agent_config_from_user_data(user_data) == config()


def test_without_an_xray_binary_the_user_data_has_no_xray_step() -> None:
    """A controller with no Xray binary: no download, no checksum file, no install; the node runs V2Ray only."""
    user_data = render()
    doc = yaml.safe_load(user_data)
    assert "xray" not in yaml.safe_dump(doc["runcmd"]).lower()
    assert not [f for f in doc["write_files"] if "xray" in f["path"]]
    assert xray_download_from_user_data(user_data) is None
    with_xray = yaml.safe_load(render(xray=XRAY))
    assert len(with_xray["runcmd"]) == len(doc["runcmd"]) + 3
    assert len(with_xray["write_files"]) == len(doc["write_files"]) + 1
    # everything else is the same document
    assert [c for c in with_xray["runcmd"] if "xray" not in yaml.safe_dump(c)] == doc["runcmd"]


def test_the_xray_checksum_file_is_what_sha256sum_checks(tmp_path: Path) -> None:
    """The written checksum line, pointed at a copy, passes `sha256sum --check --strict`; a tampered copy fails."""
    binary = tmp_path / XRAY.filename
    binary.write_bytes(b"\x7fELF pretend xray")
    xray = XrayDownload(url=XRAY.url, sha256=hashlib.sha256(binary.read_bytes()).hexdigest(),
                        filename=XRAY.filename, arch=XRAY.arch)
    line = written(render(xray=xray), f"/opt/vpnfleet/dist/{xray.filename}.sha256")["content"]
    sums = tmp_path / "sums"
    sums.write_text(line.replace("/opt/vpnfleet/dist", str(tmp_path)))
    check = ["sha256sum", "--check", "--strict", str(sums)]
    assert subprocess.run(check, capture_output=True, timeout=30).returncode == 0
    binary.write_bytes(b"\x7fELF tampered")
    assert subprocess.run(check, capture_output=True, timeout=30).returncode != 0


def test_the_xray_install_step_installs_only_for_this_node_s_architecture(tmp_path: Path) -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("the step asks dpkg --print-architecture (Debian)")
    here = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    other = "arm64" if here != "arm64" else "amd64"
    source = tmp_path / "download"
    source.write_bytes(b"#!/bin/sh\necho xray\n")
    source.chmod(0o600)
    for arch, installed in ((other, False), (here, True)):
        if arch not in ("amd64", "arm64"):
            continue
        xray = XrayDownload(url=XRAY.url, sha256=XRAY.sha256, filename=f"xray-26.3.27-linux-{arch}", arch=arch)
        step = next(cmd for cmd in yaml.safe_load(render(xray=xray))["runcmd"]
                    if isinstance(cmd, list) and cmd[-1] == XRAY_PATH)
        target = tmp_path / f"xray-{arch}"
        # the step as cloud-init runs it, with the download and the target moved here
        result = subprocess.run([*step[:-2], str(source), str(target)], capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr  # a foreign build is skipped, not a failed boot
        assert target.exists() == installed
        if installed:
            assert target.stat().st_mode & 0o777 == 0o755 and target.read_bytes() == source.read_bytes()
        else:
            assert "runs V2Ray only" in result.stderr


@pytest.mark.parametrize("xray", [
    XrayDownload(url="file:///etc/passwd", sha256=XRAY.sha256, filename=XRAY.filename, arch="amd64"),
    XrayDownload(url=XRAY.url, sha256="nope", filename=XRAY.filename, arch="amd64"),
    XrayDownload(url=XRAY.url, sha256=XRAY.sha256, filename="xray-26.3.27-linux-amd64; rm -rf /", arch="amd64"),
    XrayDownload(url=XRAY.url, sha256=XRAY.sha256, filename="../xray-26.3.27-linux-amd64", arch="amd64"),
    XrayDownload(url=XRAY.url, sha256=XRAY.sha256, filename=XRAY.filename, arch="arm64"),  # name and arch differ
    XrayDownload(url=XRAY.url, sha256=XRAY.sha256, filename="xray-26.3.27-linux-mips", arch="mips"),
])
def test_bad_xray_values_are_refused(xray: XrayDownload) -> None:
    with pytest.raises(CloudInitError, match="Xray"):
        render(xray=xray)


def test_an_absent_value_outside_a_list_entry_is_an_error(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("#cloud-config\nhostname: '${XRAY_ARCH}'\nruncmd:\n  - [echo, '${XRAY_URL}']\n  - [echo, hi]\n")
    with pytest.raises(CloudInitError, match="XRAY_ARCH"):
        render(template=template)
    template.write_text("#cloud-config\nruncmd:\n  - [echo, '${XRAY_URL}']\n  - [echo, hi]\n")
    assert yaml.safe_load(render(template=template))["runcmd"] == [["echo", "hi"]]
    assert yaml.safe_load(render(template=template, xray=XRAY))["runcmd"] == [["echo", XRAY.url], ["echo", "hi"]]


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
        render_user_data(config(), url, sha, filename, TEMPLATE, requirements=REQUIREMENTS)


# -- downloads: no credential in a URL, https pinned to the controller's CA, hash-pinned dependencies ---------

@pytest.mark.parametrize("url, requirements", [
    (URL + "?token=tok-123", REQUIREMENTS),
    (URL, Download(url=REQUIREMENTS.url + "?token=tok-123", sha256=REQUIREMENTS.sha256,
                   filename=REQUIREMENTS.filename)),
])
def test_a_token_in_a_download_url_is_refused(url: str, requirements: Download) -> None:
    with pytest.raises(CloudInitError, match="token"):
        render(url=url, requirements=requirements)


def test_no_url_in_the_user_data_carries_the_token() -> None:
    user_data = render(xray=XRAY)
    urls = [arg for cmd in curls(user_data) for arg in cmd if arg.startswith(("https://", "http://"))]
    assert len(urls) == 3 and not [u for u in urls if "tok-123" in u or "token" in u]


def test_downloads_from_the_controller_are_pinned_to_its_ca() -> None:
    user_data = render(xray=XRAY)
    ca = written(user_data, DOWNLOAD_CA_PATH)
    assert ca["content"] == CA_PEM and ca["owner"] == "root:root"
    assert download_ca_from_user_data(user_data) == CA_PEM
    doc = yaml.safe_load(user_data)
    assert doc["write_files"].index(ca) < len(doc["write_files"])  # written before runcmd runs
    for cmd in curls(user_data):
        # the controller's CA only, https only (also after a redirect)
        assert option(cmd, "--cacert") == DOWNLOAD_CA_PATH and option(cmd, "--proto") == "=https", cmd


def test_behind_a_tls_proxy_downloads_use_the_system_trust_store() -> None:
    user_data = render(xray=XRAY, ca=None)
    assert not [f for f in yaml.safe_load(user_data)["write_files"] if f["path"] == DOWNLOAD_CA_PATH]
    assert download_ca_from_user_data(user_data) is None
    assert {option(cmd, "--cacert") for cmd in curls(user_data)} == {SYSTEM_CA_PATH}


def test_xray_from_a_mirror_uses_the_system_trust_store_and_plain_http_is_allowed_only_for_http_urls() -> None:
    mirror = XrayDownload(url="https://mirror.example/xray/xray-26.3.27-linux-amd64", sha256=XRAY.sha256,
                          filename=XRAY.filename, arch="amd64")
    by_url = {cmd[-1]: cmd for cmd in curls(render(xray=mirror))}
    assert option(by_url[mirror.url], "--cacert") == SYSTEM_CA_PATH
    assert option(by_url[URL], "--cacert") == DOWNLOAD_CA_PATH
    plain = "http://ctl.example:8080/agent/package/" + FILENAME
    by_url = {cmd[-1]: cmd for cmd in curls(render(url=plain, ca=None))}
    assert option(by_url[plain], "--proto") == "=https,http"


def test_dependencies_install_from_the_hash_pinned_requirements_before_the_agent() -> None:
    runcmd = yaml.safe_load(render())["runcmd"]
    pip = [cmd for cmd in runcmd if isinstance(cmd, list) and cmd[:2] == ["/opt/vpnfleet/venv/bin/pip", "install"]]
    assert len(pip) == 2
    deps, agent = pip
    assert "--require-hashes" in deps and option(deps, "-r") == f"/opt/vpnfleet/dist/{REQUIREMENTS.filename}"
    assert option(deps, "--only-binary") == ":all:"  # nothing is built on the node
    assert {"--no-deps", "--no-index"} <= set(agent) and agent[-1] == f"/opt/vpnfleet/dist/{FILENAME}"
    download = next(i for i, cmd in enumerate(runcmd) if isinstance(cmd, list) and cmd[0] == "curl"
                    and cmd[-1] == REQUIREMENTS.url)
    check = runcmd.index(["sha256sum", "--check", "--strict", "/opt/vpnfleet/dist/SHA256SUMS"])
    assert download < check < runcmd.index(deps) < runcmd.index(agent)


@pytest.mark.parametrize("requirements", [
    Download(url=REQUIREMENTS.url, sha256="nope", filename=REQUIREMENTS.filename),
    Download(url=REQUIREMENTS.url, sha256=REQUIREMENTS.sha256, filename="../r.txt"),
    Download(url="file:///etc/passwd", sha256=REQUIREMENTS.sha256, filename=REQUIREMENTS.filename),
])
def test_bad_requirements_values_are_refused(requirements: Download) -> None:
    with pytest.raises(CloudInitError, match="requirements"):
        render(requirements=requirements)


def test_reading_user_data_without_agent_config() -> None:
    with pytest.raises(CloudInitError, match="does not write"):
        agent_config_from_user_data("#cloud-config\nruncmd: []\n")
    with pytest.raises(CloudInitError, match="cloud-config"):
        agent_config_from_user_data("#!/bin/sh\necho hi\n")
