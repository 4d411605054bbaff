"""AWS EC2 provider: one boto3 client per region, every call in a worker thread, logged and error-mapped.

Launching is safe to repeat: an existing live instance tagged with the node id is returned first, and the
request carries a ClientToken derived from the node id so EC2 itself de-duplicates a retried call.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from controller.providers.base import (
    PENDING,
    RUNNING,
    SHUTTING_DOWN,
    STOPPED,
    STOPPING,
    TERMINATED,
    NODE_TAG,
    Instance,
    LaunchRequest,
    ProviderError,
)
from controller.settings import RegionSettings, Settings

log = logging.getLogger("vpnfleet.ec2")

MANAGED_TAG = "vpnfleet:managed"
#: States of a machine that can still serve (or be started again) — what launch may reuse.
LIVE_STATES = (PENDING, RUNNING, STOPPING, STOPPED)
#: Every state except terminated, for the sync loop.
LISTED_STATES = LIVE_STATES + (SHUTTING_DOWN,)
#: Errors meaning "EC2 does not know this instance".
NOT_FOUND_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})
#: EC2 replays the original response for a repeated ClientToken, even once that instance is terminated; a
#: node relaunched after its machine died then needs a fresh (still deterministic) token.
MAX_TOKEN_ATTEMPTS = 4
# Prefer the most useful instance when a crash left several tagged with one node id.
_STATE_RANK = {RUNNING: 0, PENDING: 1, STOPPED: 2, STOPPING: 3}

#: Instance metadata (IMDS) only with a session token (IMDSv2), and a hop limit of 1: the token's reply
#: cannot cross a second hop, so nothing forwarded through the node (a subscriber's tunnel, a container)
#: can use the metadata service. Overrides whatever the launch template says.
METADATA_OPTIONS: dict[str, Any] = {"HttpTokens": "required", "HttpPutResponseHopLimit": 1,
                                    "HttpEndpoint": "enabled"}

_BOTO_CONFIG = Config(
    connect_timeout=10,
    read_timeout=30,
    retries={"mode": "standard", "max_attempts": 3},
)


class Ec2Provider:
    """The Provider protocol on AWS EC2 (or any endpoint speaking its API, such as moto)."""

    name = "ec2"

    def service_ports(self, defaults: dict[str, int]) -> tuple[str, dict[str, int]]:
        """Every machine is its own: the configured ports on all addresses."""
        return "", dict(defaults)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._clients: dict[str, Any] = {}
        # Clients are created in worker threads; the lock keeps it to one per region.
        self._lock = threading.Lock()

    # -- Provider API ------------------------------------------------------------------------------------
    async def launch(self, request: LaunchRequest) -> Instance:
        region = self._region(request.region)
        existing = await self.find(region.code, request.node_id)
        if existing is not None:
            log.info("ec2 launch region=%s node=%s reusing instance=%s", region.code, request.node_id,
                     existing.instance_id)
            return existing
        for attempt in range(1, MAX_TOKEN_ATTEMPTS + 1):
            token = request.node_id if attempt == 1 else f"{request.node_id}.{attempt}"
            resp = await self._call(region.code, "run_instances", None, **run_instances_params(region, request, token))
            instance = to_instance(resp["Instances"][0])
            if instance.state not in (SHUTTING_DOWN, TERMINATED):
                return instance
        raise ProviderError(
            f"EC2 run_instances in {region.code}: node {request.node_id} keeps getting terminated instances back "
            f"for its client tokens; use a new node id"
        )

    async def find(self, region: str, node_id: str) -> Instance | None:
        found = await self._describe_many(
            region,
            Filters=[{"Name": f"tag:{NODE_TAG}", "Values": [node_id]},
                     {"Name": "instance-state-name", "Values": list(LIVE_STATES)}],
        )
        if len(found) > 1:
            log.warning("ec2 find region=%s node=%s several live instances: %s", region, node_id,
                        ", ".join(i.instance_id for i in found))
        return min(found, key=lambda i: (_STATE_RANK.get(i.state, 9), i.instance_id), default=None)

    async def describe(self, region: str, instance_id: str) -> Instance | None:
        resp = await self._call(region, "describe_instances", instance_id, tolerate=NOT_FOUND_CODES,
                                InstanceIds=[instance_id])
        if resp is None:
            return None
        instances = [to_instance(i) for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
        return instances[0] if instances else None

    async def list_instances(self, region: str) -> list[Instance]:
        return await self._describe_many(
            region,
            Filters=[{"Name": "tag-key", "Values": [NODE_TAG]},
                     {"Name": "instance-state-name", "Values": list(LISTED_STATES)}],
        )

    async def start(self, region: str, instance_id: str) -> None:
        await self._call(region, "start_instances", instance_id, InstanceIds=[instance_id])

    async def stop(self, region: str, instance_id: str) -> None:
        await self._call(region, "stop_instances", instance_id, InstanceIds=[instance_id])

    async def reboot(self, region: str, instance_id: str) -> None:
        await self._call(region, "reboot_instances", instance_id, InstanceIds=[instance_id])

    async def terminate(self, region: str, instance_id: str) -> None:
        # EC2 accepts terminating a terminated instance; one it no longer knows is just as gone.
        await self._call(region, "terminate_instances", instance_id, tolerate=NOT_FOUND_CODES,
                         InstanceIds=[instance_id])

    async def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- plumbing ----------------------------------------------------------------------------------------
    def _region(self, code: str) -> RegionSettings:
        region = self._settings.region(code)
        if region is None or region.provider != "ec2":
            raise ProviderError(f"region {code!r} is not an EC2 region in the settings (aws.regions)")
        return region

    def _client(self, code: str) -> Any:
        """The region's client, created on first use (runs in a worker thread: creation is slow)."""
        with self._lock:
            client = self._clients.get(code)
            if client is None:
                s = self._settings
                # Empty keys fall back to boto3's own chain (environment, instance role).
                session = boto3.session.Session(
                    aws_access_key_id=s.aws_access_key or None,
                    aws_secret_access_key=s.aws_secret_key or None,
                    region_name=code,
                )
                client = session.client("ec2", endpoint_url=s.aws_endpoint_url or None, config=_BOTO_CONFIG)
                self._clients[code] = client
            return client

    async def _describe_many(self, region: str, **params: Any) -> list[Instance]:
        instances: list[Instance] = []
        token: str | None = None
        while True:
            page_params = dict(params, NextToken=token) if token else params
            resp = await self._call(region, "describe_instances", None, **page_params)
            instances += [to_instance(i) for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
            token = resp.get("NextToken")
            if not token:
                return instances

    async def _call(self, region: str, operation: str, instance_id: str | None, *,
                    tolerate: frozenset[str] = frozenset(), **params: Any) -> Any:
        """Run one EC2 operation off the event loop; log it; map errors to ProviderError.

        Returns None when the AWS error code is in ``tolerate``. Never logs ``params`` (user data holds an
        enrollment token).
        """
        self._region(region)
        started = time.monotonic()

        def done(level: int, result: str, iid: str | None = instance_id) -> None:
            log.log(level, "ec2 %s region=%s instance=%s result=%s duration_ms=%.1f", operation, region,
                    iid or "-", result, (time.monotonic() - started) * 1000)

        def run() -> Any:
            return getattr(self._client(region), operation)(**params)

        try:
            resp = await asyncio.to_thread(run)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = error.get("Code", "Unknown"), error.get("Message", "")
            if code in tolerate:
                done(logging.INFO, code)
                return None
            done(logging.WARNING, f"error {code}")
            raise ProviderError(f"EC2 {operation} in {region} failed: {code}: {message}") from exc
        except NoCredentialsError:
            done(logging.WARNING, "error NoCredentials")
            raise ProviderError(
                f"EC2 {operation} in {region}: no AWS credentials (set aws.access_key and aws.secret_key)"
            ) from None
        except ParamValidationError:
            # botocore's message quotes parameter values, user data among them: keep it out.
            done(logging.WARNING, "error ParamValidation")
            raise ProviderError(f"EC2 {operation} in {region}: invalid request parameters") from None
        except (BotoCoreError, ValueError) as exc:
            # e.g. a malformed region code, an unreachable endpoint, an unparseable response
            done(logging.WARNING, f"error {type(exc).__name__}")
            raise ProviderError(f"EC2 {operation} in {region} failed: {exc}") from exc
        new_id = resp["Instances"][0]["InstanceId"] if operation == "run_instances" else instance_id
        done(logging.INFO, "ok", new_id)
        return resp


def run_instances_params(region: RegionSettings, request: LaunchRequest, client_token: str) -> dict[str, Any]:
    """The run_instances arguments for a node: launch template plus per-region overrides, tags and IMDSv2."""
    tags = [
        {"Key": NODE_TAG, "Value": request.node_id},
        {"Key": "Name", "Value": request.node_name},
        {"Key": MANAGED_TAG, "Value": "true"},
    ]
    params: dict[str, Any] = {
        "MinCount": 1,
        "MaxCount": 1,
        "UserData": request.user_data,  # boto3 base64-encodes it
        "ClientToken": client_token,
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}],
        "MetadataOptions": dict(METADATA_OPTIONS),
    }
    if region.template_id:
        params["LaunchTemplate"] = {"LaunchTemplateId": region.template_id}
    if region.ami_id:
        params["ImageId"] = region.ami_id
    if region.instance_type:
        params["InstanceType"] = region.instance_type
    if not region.template_id and not region.ami_id:
        raise ProviderError(f"region {region.code} needs a template_id or an ami_id to launch instances")
    return params


def to_instance(data: dict[str, Any]) -> Instance:
    """An EC2 instance description as a provider-neutral Instance."""
    tags = {t.get("Key"): t.get("Value") for t in data.get("Tags") or []}
    return Instance(
        instance_id=data["InstanceId"],
        state=data.get("State", {}).get("Name", PENDING),
        public_ip=data.get("PublicIpAddress") or None,
        private_ip=data.get("PrivateIpAddress") or None,
        node_id=tags.get(NODE_TAG),
    )
