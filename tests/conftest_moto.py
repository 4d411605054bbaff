"""Pytest plugin: a moto EC2 emulator in server mode, shared by the session and reset for every test.

Real AWS is never reached: clients get the moto endpoint and the fake key "testing" through Settings.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError

from controller.settings import RegionSettings, Settings

FAKE_KEY = "testing"
FAKE_SECRET = "testing-secret-key"
#: An AMI id moto ships; any id works since moto does not validate AMIs by default.
DEFAULT_AMI = "ami-03cf127a"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


@pytest.fixture(scope="session")
def moto_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a moto server running for the whole session."""
    exe = Path(sys.executable).parent / "moto_server"
    if not exe.exists():
        pytest.skip(f"moto_server not found beside {sys.executable} (pip install 'moto[server]')")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("moto") / "moto_server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not _answers(f"{url}/moto-api/"):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"moto_server did not start: {log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def moto_endpoint(moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The moto endpoint URL, with all state cleared before the test."""
    # Never let boto3 probe instance metadata or pick up someone's real credentials/profile.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    req = urllib.request.Request(f"{moto_server_url}/moto-api/reset", method="POST")
    with urllib.request.urlopen(req, timeout=10):
        pass
    return moto_server_url


def ec2_client(endpoint: str, region: str):  # -> EC2Client
    """A boto3 EC2 client on moto, for arranging and inspecting state in tests."""
    return boto3.client("ec2", region_name=region, endpoint_url=endpoint,
                        aws_access_key_id=FAKE_KEY, aws_secret_access_key=FAKE_SECRET)


def create_launch_template(endpoint: str, region: str, name: str = "vpnfleet-node",
                           instance_type: str = "t3.micro") -> str:
    """Create a launch template in region and return its id."""
    client = ec2_client(endpoint, region)
    # Ask for one image by id: listing moto's ~1300 Amazon images takes a second. Moto accepts any id anyway.
    try:
        images = client.describe_images(ImageIds=[DEFAULT_AMI]).get("Images", [])
    except ClientError:
        images = []
    ami = images[0]["ImageId"] if images else DEFAULT_AMI
    resp = client.create_launch_template(
        LaunchTemplateName=name, LaunchTemplateData={"ImageId": ami, "InstanceType": instance_type},
    )
    return resp["LaunchTemplate"]["LaunchTemplateId"]


def moto_settings(endpoint: str, *regions: RegionSettings) -> Settings:
    """Settings pointing EC2 at moto with fake credentials."""
    return Settings(aws_access_key=FAKE_KEY, aws_secret_key=FAKE_SECRET, aws_endpoint_url=endpoint,
                    regions=tuple(regions))
