"""The interface every provider implements, and the provider-neutral instance description.

Providers are thin: they start, stop and describe machines. Node states, retries and timeouts are the node
service's business (controller/services/nodes.py), so a provider call either does its one thing or raises
ProviderError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agent.config import AgentConfig

# Provider-neutral machine states (EC2's names; the local provider maps onto them).
PENDING, RUNNING, STOPPING, STOPPED, SHUTTING_DOWN, TERMINATED = (
    "pending", "running", "stopping", "stopped", "shutting-down", "terminated",
)

#: Tag every vpnfleet machine carries, so one can be found by node id after a crash.
NODE_TAG = "vpnfleet:node-id"


class ProviderError(RuntimeError):
    """A provider call failed; the message is safe to show to operators (no secrets)."""


@dataclass(frozen=True)
class Instance:
    """A machine as the provider sees it."""

    instance_id: str
    state: str
    public_ip: str | None = None
    private_ip: str | None = None
    #: the node id from the NODE_TAG tag, if any
    node_id: str | None = None


@dataclass(frozen=True)
class LaunchRequest:
    """What is needed to start a node's machine."""

    node_id: str
    node_name: str
    region: str
    #: cloud-init user data, rendered from cloud-init/user-data.yaml
    user_data: str
    #: the agent configuration that user data carries (the local provider writes it directly)
    agent_config: AgentConfig


class Provider(Protocol):
    """A place nodes run. All methods are idempotent where the cloud allows it."""

    name: str

    async def launch(self, request: LaunchRequest) -> Instance:
        """Start a machine for request.node_id; if one already exists for that node, return it instead."""

    def service_ports(self, defaults: dict[str, int]) -> tuple[str, dict[str, int]]:
        """Where a new node's services (e.g. V2Ray's inbounds, {"vmess": 11994, ...}) listen on its machine:
        (listen address, "" for all; {service: port})."""

    async def find(self, region: str, node_id: str) -> Instance | None:
        """The live (not terminated) machine tagged with node_id, if any."""

    async def describe(self, region: str, instance_id: str) -> Instance | None:
        """The machine's current state, or None when the provider no longer knows it."""

    async def list_instances(self, region: str) -> list[Instance]:
        """Every vpnfleet machine in the region (tagged NODE_TAG), for the sync loop."""

    async def start(self, region: str, instance_id: str) -> None: ...

    async def stop(self, region: str, instance_id: str) -> None: ...

    async def reboot(self, region: str, instance_id: str) -> None: ...

    async def terminate(self, region: str, instance_id: str) -> None: ...

    async def close(self) -> None:
        """Release clients and background resources (not the machines)."""
