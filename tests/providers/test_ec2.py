"""Ec2Provider against moto in server mode (the AWS boundary is the only thing emulated)."""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator

import pytest

from agent.config import AgentConfig
from controller.providers.base import NODE_TAG, RUNNING, STOPPED, TERMINATED, LaunchRequest, ProviderError
from controller.providers.ec2 import Ec2Provider, run_instances_params
from controller.settings import RegionSettings, Settings
from tests.conftest_moto import FAKE_SECRET, create_launch_template, ec2_client, moto_settings

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
TOKEN = "enroll-tok-3f9a1c"
USER_DATA = f"#cloud-config\nruncmd:\n  - [curl, 'https://ctl.example/agent.whl?token={TOKEN}']\n"


def request(node_id: str = "node-1", region: str = REGION) -> LaunchRequest:
    config = AgentConfig(grpc_addr="ctl:50051", enroll_addr="ctl:50052", ca_cert_pem="PEM", enrollment_token=TOKEN)
    return LaunchRequest(node_id=node_id, node_name=f"vpn-{node_id}", region=region, user_data=USER_DATA,
                         agent_config=config)


@pytest.fixture
def template_id(moto_endpoint: str) -> str:
    return create_launch_template(moto_endpoint, REGION)


@pytest.fixture
async def provider(moto_endpoint: str, template_id: str) -> AsyncIterator[Ec2Provider]:
    settings = moto_settings(
        moto_endpoint,
        RegionSettings(code=REGION, name="US East", provider="ec2", template_id=template_id),
        RegionSettings(code=OTHER_REGION, name="Ireland", provider="ec2", ami_id="ami-12345678",
                       instance_type="t3.small"),
        RegionSettings(code="bad region!", name="Broken", provider="ec2", ami_id="ami-12345678"),
    )
    p = Ec2Provider(settings)
    yield p
    await p.close()


def raw_instance(endpoint: str, region: str, instance_id: str) -> dict:
    resp = ec2_client(endpoint, region).describe_instances(InstanceIds=[instance_id])
    return resp["Reservations"][0]["Instances"][0]


async def test_launch_with_template_tags_and_user_data(provider: Ec2Provider, moto_endpoint: str,
                                                       template_id: str) -> None:
    inst = await provider.launch(request())
    assert inst.instance_id.startswith("i-") and inst.node_id == "node-1"

    described = await provider.describe(REGION, inst.instance_id)
    assert described is not None and described.state == RUNNING
    assert described.public_ip and described.private_ip

    raw = raw_instance(moto_endpoint, REGION, inst.instance_id)
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags[NODE_TAG] == "node-1"
    assert tags["Name"] == "vpn-node-1"
    assert tags["vpnfleet:managed"] == "true"
    assert tags["aws:ec2launchtemplate:id"] == template_id
    attr = ec2_client(moto_endpoint, REGION).describe_instance_attribute(InstanceId=inst.instance_id,
                                                                         Attribute="userData")
    assert base64.b64decode(attr["UserData"]["Value"]).decode() == USER_DATA


IMDSV2_HOP_1 = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1, "HttpEndpoint": "enabled"}


def test_run_instances_requires_imdsv2_with_hop_limit_1() -> None:
    for region in (RegionSettings(code=REGION, name="T", provider="ec2", template_id="lt-0123456789abcdef0"),
                   RegionSettings(code=REGION, name="A", provider="ec2", ami_id="ami-12345678")):
        params = run_instances_params(region, request(), "node-1")
        assert params["MetadataOptions"] == IMDSV2_HOP_1


@pytest.mark.parametrize("region", [REGION, OTHER_REGION])  # launch template; AMI and type overrides
async def test_launched_instance_requires_imdsv2_with_hop_limit_1(provider: Ec2Provider, moto_endpoint: str,
                                                                  region: str) -> None:
    # moto stores the MetadataOptions run_instances sends and echoes them in describe_instances (its
    # defaults when none are sent: HttpTokens "optional", hop limit 1, endpoint "enabled"; it does not take
    # them from a launch template, which real EC2 does — the explicit options win there too).
    inst = await provider.launch(request(region=region))
    options = raw_instance(moto_endpoint, region, inst.instance_id)["MetadataOptions"]
    assert {k: options[k] for k in IMDSV2_HOP_1} == IMDSV2_HOP_1


async def test_launch_with_ami_and_type_overrides(provider: Ec2Provider, moto_endpoint: str) -> None:
    inst = await provider.launch(request(region=OTHER_REGION))
    raw = raw_instance(moto_endpoint, OTHER_REGION, inst.instance_id)
    assert (raw["ImageId"], raw["InstanceType"]) == ("ami-12345678", "t3.small")


async def test_launch_twice_returns_the_same_instance(provider: Ec2Provider, moto_endpoint: str) -> None:
    first = await provider.launch(request())
    second = await provider.launch(request())
    assert second.instance_id == first.instance_id
    reservations = ec2_client(moto_endpoint, REGION).describe_instances()["Reservations"]
    assert sum(len(r["Instances"]) for r in reservations) == 1


async def test_launch_after_termination_starts_a_new_instance(provider: Ec2Provider) -> None:
    first = await provider.launch(request())
    await provider.terminate(REGION, first.instance_id)
    second = await provider.launch(request())
    assert second.instance_id != first.instance_id


async def test_launch_skips_client_token_replaying_a_terminated_instance(provider: Ec2Provider) -> None:
    # Real EC2 answers a repeated ClientToken with the original instance even once it is terminated; moto
    # does not, so the client's run_instances is wrapped to replay that for the node's first token.
    client = provider._client(REGION)
    real_run = client.run_instances
    tokens: list[str] = []

    def run_instances(**kwargs: object) -> dict:
        tokens.append(str(kwargs["ClientToken"]))
        resp = real_run(**kwargs)
        if kwargs["ClientToken"] == "node-1":
            resp["Instances"][0]["State"] = {"Code": 48, "Name": TERMINATED}
        return resp

    client.run_instances = run_instances
    inst = await provider.launch(request("node-1"))
    assert tokens == ["node-1", "node-1.2"]
    assert inst.state != TERMINATED


async def test_find_describe_and_list(provider: Ec2Provider) -> None:
    a = await provider.launch(request("node-a"))
    b = await provider.launch(request("node-b"))
    found = await provider.find(REGION, "node-b")
    assert found is not None and found.instance_id == b.instance_id
    assert await provider.find(REGION, "node-missing") is None
    assert {i.instance_id for i in await provider.list_instances(REGION)} == {a.instance_id, b.instance_id}
    assert await provider.list_instances(OTHER_REGION) == []


async def test_list_ignores_untagged_and_terminated(provider: Ec2Provider, moto_endpoint: str) -> None:
    keep = await provider.launch(request("node-keep"))
    gone = await provider.launch(request("node-gone"))
    ec2_client(moto_endpoint, REGION).run_instances(ImageId="ami-12345678", MinCount=1, MaxCount=1)
    await provider.terminate(REGION, gone.instance_id)
    assert [i.instance_id for i in await provider.list_instances(REGION)] == [keep.instance_id]
    assert await provider.find(REGION, "node-gone") is None


async def test_stop_start_reboot_terminate(provider: Ec2Provider) -> None:
    inst = await provider.launch(request())
    await provider.stop(REGION, inst.instance_id)
    assert (await provider.describe(REGION, inst.instance_id)).state == STOPPED
    await provider.start(REGION, inst.instance_id)
    assert (await provider.describe(REGION, inst.instance_id)).state == RUNNING
    await provider.reboot(REGION, inst.instance_id)
    assert (await provider.describe(REGION, inst.instance_id)).state == RUNNING
    await provider.terminate(REGION, inst.instance_id)
    assert (await provider.describe(REGION, inst.instance_id)).state == TERMINATED
    await provider.terminate(REGION, inst.instance_id)  # again: fine


async def test_unknown_instances(provider: Ec2Provider) -> None:
    assert await provider.describe(REGION, "i-0123456789abcdef0") is None
    await provider.terminate(REGION, "i-0123456789abcdef0")
    with pytest.raises(ProviderError, match=r"stop_instances in us-east-1 failed: InvalidInstanceID.NotFound"):
        await provider.stop(REGION, "i-0123456789abcdef0")


async def test_region_errors(provider: Ec2Provider) -> None:
    with pytest.raises(ProviderError, match="not an EC2 region"):
        await provider.list_instances("ap-nowhere-9")
    with pytest.raises(ProviderError, match="not an EC2 region"):
        await provider.launch(request(region="local"))
    with pytest.raises(ProviderError, match="bad region!"):
        await provider.list_instances("bad region!")


async def test_no_credentials_is_a_provider_error(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    settings = Settings(aws_endpoint_url=moto_endpoint,
                        regions=(RegionSettings(code=REGION, name="US", provider="ec2", ami_id="ami-1"),))
    p = Ec2Provider(settings)
    with pytest.raises(ProviderError, match="no AWS credentials"):
        await p.list_instances(REGION)
    await p.close()


async def test_every_call_is_logged_without_secrets(provider: Ec2Provider,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vpnfleet.ec2")
    inst = await provider.launch(request())  # find (describe) + run_instances
    await provider.stop(REGION, inst.instance_id)
    with pytest.raises(ProviderError):
        await provider.start(REGION, "i-0123456789abcdef0")
    records = [r for r in caplog.records if r.name == "vpnfleet.ec2"]
    ops = [r.getMessage().split()[1] for r in records]
    assert ops == ["describe_instances", "run_instances", "stop_instances", "start_instances"]
    run = records[1].getMessage()
    assert f"region={REGION}" in run and f"instance={inst.instance_id}" in run and "result=ok" in run
    assert "duration_ms=" in run
    assert "InvalidInstanceID.NotFound" in records[3].getMessage()
    text = caplog.text
    assert TOKEN not in text and "cloud-config" not in text and FAKE_SECRET not in text
