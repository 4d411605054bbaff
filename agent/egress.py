"""Where subscribers' traffic may not go on this node: the egress policy as validated values (pure, but for
node_addresses()).

Every data plane holds its tunnels to one policy (DESIGN.md, "A subscriber's tunnel reaches the internet,
nothing else"): V2Ray routes these destinations to a blackhole (agent.v2ray.config), WireGuard drops them in
FORWARD (agent.wireguard.nat). The set is

    the node itself     NODE_ITSELF (loopback, the unspecified networks) and every address of the node:
                        never reachable, whatever allowed_cidrs says
    the built-in set    agent.addresses: private, CGNAT, link-local (cloud metadata), multicast, reserved,
                        ULA, and the IPv4-mapped, 6to4 and NAT64 forms of the IPv4 ones
    the operator's      EgressPolicy.blocked_cidrs (egress.blocked_cidrs, plus the node's public address)

minus the operator's exceptions (EgressPolicy.allowed_cidrs), which may open anything but the node itself.
The agent enforces the built-in set even when the desired state carries no policy at all.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from typing import Iterable

import psutil

from agent.addresses import BLOCKED_NETWORKS, EMBEDDED_NETWORKS
from protos import agent_pb2

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: What no exception opens: a tunnel that reaches these reaches the node's own services (its V2Ray API).
NODE_ITSELF: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n) for n in ("0.0.0.0/8", "127.0.0.0/8", "::1/128", "::/128")
)
#: IPv4-mapped IPv6 addresses. V2Ray turns such a destination into its IPv4 address before routing (and
#: refuses a /96 rule), so there the IPv4 ranges cover them; firewalls need the range itself.
IPV4_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
#: Bounds on what a desired state may list (each CIDR is a routing entry or a firewall rule).
MAX_CIDRS = 1000


@dataclasses.dataclass(frozen=True)
class EgressSpec:
    """The operator's part of the policy (the built-in set is implied). Equal specs give equal rules."""

    #: CIDRs blocked besides the built-in set, normalised, in the order given, no duplicates.
    blocked: tuple[str, ...] = ()
    #: Exceptions to the blocked set (never overlapping NODE_ITSELF).
    allowed: tuple[str, ...] = ()
    block_bittorrent: bool = False

    def node_itself(self, addresses: Iterable[str] = ()) -> list[str]:
        """What is blocked before any exception: loopback, unspecified and the node's own addresses."""
        return _unique([n.with_prefixlen for n in NODE_ITSELF] + list(addresses))

    def blocked_networks(self) -> list[str]:
        """The built-in set and the operator's additions (the node itself aside)."""
        itself = {n.with_prefixlen for n in NODE_ITSELF}
        builtin = BLOCKED_NETWORKS + EMBEDDED_NETWORKS
        return _unique([n.with_prefixlen for n in builtin if n.with_prefixlen not in itself] + list(self.blocked))


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _network(value: str, field: str) -> Network:
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"egress.{field}: {value!r} is not a CIDR") from None


def egress_from_proto(part: agent_pb2.EgressPolicy) -> EgressSpec:
    """Validate the desired policy. Raises ValueError naming the entry at fault."""
    for field in ("blocked_cidrs", "allowed_cidrs"):
        if len(getattr(part, field)) > MAX_CIDRS:
            raise ValueError(f"egress.{field}: at most {MAX_CIDRS} entries")
    blocked = [_network(v, "blocked_cidrs").with_prefixlen for v in part.blocked_cidrs]
    allowed = []
    for value in part.allowed_cidrs:
        network = _network(value, "allowed_cidrs")
        if any(network.version == n.version and network.overlaps(n) for n in NODE_ITSELF):
            raise ValueError(f"egress.allowed_cidrs: {network} would open the node itself (loopback or 0.0.0.0/8)")
        allowed.append(network.with_prefixlen)
    return EgressSpec(blocked=tuple(_unique(blocked)), allowed=tuple(_unique(allowed)),
                      block_bittorrent=part.block_bittorrent)


def node_addresses() -> list[str]:
    """Every address on this node's interfaces, as /32 and /128 networks (loopback ones included)."""
    out = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            try:
                ip = ipaddress.ip_address(address.address.split("%", 1)[0])  # fe80::1%eth0
            except ValueError:
                continue
            out.append(ipaddress.ip_network(ip).with_prefixlen)
    return sorted(set(out))
