"""The firewall of an interface's peers, with iptables (preferred) or nft:

* the egress policy (agent.egress): what peers' forwarded traffic may not reach (loopback, private, link-local
  and metadata, the node's own addresses, ...) is rejected in FORWARD, whenever a firewall tool exists, NAT or
  not; the interface's own subnets too unless peer_to_peer. iptables: a chain per interface and family
  (VPF-<name>), replaced atomically by iptables-restore and jumped to first in FORWARD; nft: rules at the top
  of the interface's own table's forward chain, the table replaced in one transaction.
* internet egress (nat): ip_forward plus masquerading of the interface's subnets out of the default route's
  device, and FORWARD accepts for the interface.

Rules carry a comment naming the interface, are checked before being added (`iptables -C`), and are
recorded so exactly they are removed later.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
from pathlib import Path

from agent import egress
from agent.wireguard import link
from agent.wireguard.link import CommandError
from agent.wireguard.model import InterfaceSpec

PROC_SYS = Path("/proc/sys")

#: NAT state of one interface, as stored in the driver's state file:
#:   {"tool": "iptables", "rules": [{"bin": "iptables", "table": "nat", "chain": "POSTROUTING", "args": [...]}],
#:    "chains": [{"bin": "iptables", "name": "VPF-wg0"}]}
#:   {"tool": "nft", "table": "vpnfleet_wg0_1a2b3c", "script": "..."}
NatRecord = dict


def tool() -> str | None:
    """The firewall tool NAT uses here: "iptables", "nft", or None."""
    if shutil.which("iptables"):
        return "iptables"
    if shutil.which("nft"):
        return "nft"
    return None


def check_available(spec: InterfaceSpec) -> None:
    """ValueError if spec asks for NAT and this node cannot do it."""
    if not spec.nat:
        return
    found = tool()
    if found is None:
        raise ValueError(f"interface {spec.name}: nat requested but neither iptables nor nft is installed")
    if found == "iptables" and spec.has_ipv6 and not shutil.which("ip6tables"):
        raise ValueError(f"interface {spec.name}: nat for IPv6 addresses needs ip6tables, which is missing")


def _write_sysctl(key: str, value: str) -> None:
    path = PROC_SYS / key.replace(".", "/")
    if path.read_text().strip() != value:
        path.write_text(value + "\n")


def enable_forwarding(spec: InterfaceSpec, uplink_v6: str | None) -> None:
    """Turn on forwarding (never turned off again: other services may rely on it)."""
    _write_sysctl("net.ipv4.ip_forward", "1")
    if spec.has_ipv6:
        # With forwarding on, accept_ra=1 ignores router advertisements: keep the uplink's SLAAC route alive.
        if uplink_v6:
            ra = PROC_SYS / "net/ipv6/conf" / uplink_v6 / "accept_ra"
            if ra.exists() and ra.read_text().strip() == "1":
                ra.write_text("2\n")
        _write_sysctl("net.ipv6.conf.all.forwarding", "1")


def _uplinks(spec: InterfaceSpec) -> dict[int, str | None]:
    uplinks = {}
    for version in (4, 6):
        dev = link.default_route_device(version)
        uplinks[version] = dev if dev != spec.name else None
    return uplinks


def chain_name(interface: str) -> str:
    """The egress chain of an interface (iptables allows 28 characters; interface names have at most 15)."""
    return f"VPF-{interface}"


def _versions(spec: InterfaceSpec) -> list[int]:
    return sorted({ipaddress.ip_network(subnet).version for subnet in spec.subnets})


def egress_targets(spec: InterfaceSpec, version: int, node_addresses: list[str]) -> tuple[list[str], list[str]]:
    """(exempt, rejected) destinations of the interface's forwarded traffic for one IP version, in rule order:
    the exempt ones (the interface's own subnets when peer_to_peer, then the operator's exceptions) come
    first, but never cover the node itself, which is rejected before them."""
    policy = spec.egress

    def of_version(cidrs: list[str]) -> list[str]:
        return [c for c in cidrs if ipaddress.ip_network(c).version == version]

    exempt = (spec.subnets if spec.peer_to_peer else []) + list(policy.allowed)
    return of_version(exempt), of_version(policy.node_itself(node_addresses) + policy.blocked_networks()
                                          + [egress.IPV4_MAPPED.with_prefixlen])


def egress_chain(spec: InterfaceSpec, version: int, node_addresses: list[str]) -> str:
    """iptables-restore input that replaces the interface's egress chain for one IP version."""
    chain = chain_name(spec.name)
    exempt, rejected = egress_targets(spec, version, node_addresses)
    itself = set(spec.egress.node_itself(node_addresses))
    lines = ["*filter", f":{chain} - [0:0]"]
    # The node itself first: no exception opens it. Then the exceptions (back to FORWARD), then the rest.
    lines += [f"-A {chain} -d {cidr} -j REJECT" for cidr in rejected if cidr in itself]
    lines += [f"-A {chain} -d {cidr} -j RETURN" for cidr in exempt]
    lines += [f"-A {chain} -d {cidr} -j REJECT" for cidr in rejected if cidr not in itself]
    return "\n".join(lines + ["COMMIT", ""])


def iptables_rules(spec: InterfaceSpec, uplinks: dict[int, str | None]) -> list[dict]:
    tag = ["-m", "comment", "--comment", f"vpnfleet wireguard {spec.name}"]
    rules = []
    versions = _versions(spec)
    for version in versions:
        # First in FORWARD, before anyone's accepts (ours included): the egress policy.
        rules.append({"bin": "iptables" if version == 4 else "ip6tables", "table": "filter", "chain": "FORWARD",
                      "insert": True, "args": ["-i", spec.name, *tag, "-j", chain_name(spec.name)]})
    if not spec.nat:
        return rules
    for subnet in spec.subnets:
        version = ipaddress.ip_network(subnet).version
        out = ["-o", uplinks[version]] if uplinks.get(version) else ["!", "-o", spec.name]
        rules.append(
            {
                "bin": "iptables" if version == 4 else "ip6tables",
                "table": "nat",
                "chain": "POSTROUTING",
                "args": ["-s", subnet, *out, *tag, "-j", "MASQUERADE"],
            }
        )
    for version in versions:
        binary = "iptables" if version == 4 else "ip6tables"
        rules.append(
            {"bin": binary, "table": "filter", "chain": "FORWARD", "args": ["-i", spec.name, *tag, "-j", "ACCEPT"]}
        )
        rules.append(
            {
                "bin": binary,
                "table": "filter",
                "chain": "FORWARD",
                "args": ["-o", spec.name, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", *tag,
                         "-j", "ACCEPT"],
            }
        )
    return rules


def _iptables(rule: dict, action: str) -> list[str]:
    where = [rule["chain"], "1"] if action == "-I" else [rule["chain"]]
    return [rule["bin"], "-w", "5", "-t", rule["table"], action, *where, *rule["args"]]


def _iptables_present(rule: dict) -> bool:
    try:
        link.run(_iptables(rule, "-C"))
    except CommandError:
        return False
    return True


def nft_table(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"vpnfleet_{safe}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def nft_script(spec: InterfaceSpec, uplinks: dict[int, str | None], node_addresses: list[str] = ()) -> str:
    table = nft_table(spec.name)
    nat_rules = []
    if spec.nat:
        for subnet in spec.subnets:
            version = ipaddress.ip_network(subnet).version
            family = "ip" if version == 4 else "ip6"
            out = f'oifname "{uplinks[version]}"' if uplinks.get(version) else f'oifname != "{spec.name}"'
            nat_rules.append(f"    {family} saddr {subnet} {out} masquerade")
    egress_rules = []
    for version in _versions(spec):
        family = "ip" if version == 4 else "ip6"
        exempt, rejected = egress_targets(spec, version, list(node_addresses))
        itself = set(spec.egress.node_itself(node_addresses))
        # An accept here ends only this chain; a reject is final. Same order as the iptables chain.
        for verdict, cidrs in (("reject", [c for c in rejected if c in itself]), ("accept", exempt),
                               ("reject", [c for c in rejected if c not in itself])):
            if cidrs:
                egress_rules.append(f'    iifname "{spec.name}" {family} daddr {{ {", ".join(cidrs)} }} {verdict}')
    forward = egress_rules + ([f'    iifname "{spec.name}" accept',
                               f'    oifname "{spec.name}" ct state related,established accept'] if spec.nat else [])
    postrouting = ["  chain postrouting {", "    type nat hook postrouting priority srcnat; policy accept;",
                   *nat_rules, "  }"] if spec.nat else []
    return "\n".join(
        [
            f"table inet {table} {{",
            *postrouting,
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            *forward,
            "  }",
            "}",
            "",
        ]
    )


def ensure(spec: InterfaceSpec, previous: NatRecord | None) -> NatRecord | None:
    """Make the interface's firewall match spec; returns what to record (None: no rules). Idempotent.

    Without any firewall tool there is nothing to record, and nothing to do unless spec asks for NAT (which
    then fails: check_available).
    """
    check_available(spec)
    found = tool()
    if found is None:
        remove(previous)
        return None
    uplinks = _uplinks(spec) if spec.nat else {}
    if spec.nat:
        enable_forwarding(spec, uplinks.get(6))
    addresses = egress.node_addresses()
    if found == "iptables":
        if previous and previous.get("tool") == "nft":
            remove(previous)
            previous = None
        rules = iptables_rules(spec, uplinks)
        chains = [{"bin": "iptables" if v == 4 else "ip6tables", "name": chain_name(spec.name)} for v in _versions(spec)]
        for old in (previous or {}).get("rules", []):
            if old not in rules:
                _remove_iptables_rule(old)
        for old in (previous or {}).get("chains", []):
            if old not in chains:
                _remove_chain(old)
        # The chains first (replaced atomically), then the jumps to them.
        for chain, version in zip(chains, _versions(spec)):
            link.run([f"{chain['bin']}-restore", "-w", "5", "--noflush"],
                     input=egress_chain(spec, version, addresses))
        for rule in rules:
            if not _iptables_present(rule):
                link.run(_iptables(rule, "-I" if rule.get("insert") else "-A"))
        return {"tool": "iptables", "rules": rules, "chains": chains}
    script = nft_script(spec, uplinks, addresses)
    table = nft_table(spec.name)
    if previous and previous.get("tool") == "iptables":
        remove(previous)
        previous = None
    if previous and previous.get("script") == script and _nft_table_exists(table):
        return previous
    # "table ...; delete table ...; table {...}" in one transaction: an atomic replace, idempotent.
    link.run(["nft", "-f", "-"], input=f"table inet {table}\ndelete table inet {table}\n{script}")
    return {"tool": "nft", "table": table, "script": script}


def _nft_table_exists(table: str) -> bool:
    try:
        link.run(["nft", "list", "table", "inet", table])
    except CommandError:
        return False
    return True


def _remove_iptables_rule(rule: dict) -> None:
    # -D removes one copy; loop in case an interrupted run added it twice.
    for _ in range(8):
        if not _iptables_present(rule):
            return
        link.run(_iptables(rule, "-D"))


def _remove_chain(chain: dict) -> None:
    """Flush and delete an egress chain (once nothing jumps to it); a missing chain is fine."""
    for action in ("-F", "-X"):
        try:
            link.run([chain["bin"], "-w", "5", "-t", "filter", action, chain["name"]])
        except CommandError:
            return


def remove(record: NatRecord | None) -> None:
    """Remove exactly the rules recorded (missing ones are fine)."""
    if not record:
        return
    if record.get("tool") == "iptables":
        if not shutil.which("iptables"):
            return
        for rule in record.get("rules", []):
            _remove_iptables_rule(rule)
        for chain in record.get("chains", []):
            _remove_chain(chain)
    elif record.get("tool") == "nft" and shutil.which("nft"):
        if _nft_table_exists(record["table"]):
            link.run(["nft", "delete", "table", "inet", record["table"]])
