"""Internet egress for an interface's peers: ip_forward plus masquerading of the interface's subnets out of
the default route's device, with iptables (preferred) or nft. Rules carry a comment naming the interface,
are checked before being added (`iptables -C`), and are recorded so exactly they are removed later.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
from pathlib import Path

from agent.wireguard import link
from agent.wireguard.link import CommandError
from agent.wireguard.model import InterfaceSpec

PROC_SYS = Path("/proc/sys")

#: NAT state of one interface, as stored in the driver's state file:
#:   {"tool": "iptables", "rules": [{"bin": "iptables", "table": "nat", "chain": "POSTROUTING", "args": [...]}]}
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


def iptables_rules(spec: InterfaceSpec, uplinks: dict[int, str | None]) -> list[dict]:
    tag = ["-m", "comment", "--comment", f"vpnfleet wireguard {spec.name}"]
    rules = []
    versions = set()
    for subnet in spec.subnets:
        version = ipaddress.ip_network(subnet).version
        versions.add(version)
        out = ["-o", uplinks[version]] if uplinks.get(version) else ["!", "-o", spec.name]
        rules.append(
            {
                "bin": "iptables" if version == 4 else "ip6tables",
                "table": "nat",
                "chain": "POSTROUTING",
                "args": ["-s", subnet, *out, *tag, "-j", "MASQUERADE"],
            }
        )
    for version in sorted(versions):
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
    return [rule["bin"], "-w", "5", "-t", rule["table"], action, rule["chain"], *rule["args"]]


def _iptables_present(rule: dict) -> bool:
    try:
        link.run(_iptables(rule, "-C"))
    except CommandError:
        return False
    return True


def nft_table(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return f"vpnfleet_{safe}_{hashlib.sha256(name.encode()).hexdigest()[:6]}"


def nft_script(spec: InterfaceSpec, uplinks: dict[int, str | None]) -> str:
    table = nft_table(spec.name)
    nat_rules = []
    for subnet in spec.subnets:
        version = ipaddress.ip_network(subnet).version
        family = "ip" if version == 4 else "ip6"
        out = f'oifname "{uplinks[version]}"' if uplinks.get(version) else f'oifname != "{spec.name}"'
        nat_rules.append(f"    {family} saddr {subnet} {out} masquerade")
    return "\n".join(
        [
            f"table inet {table} {{",
            "  chain postrouting {",
            "    type nat hook postrouting priority srcnat; policy accept;",
            *nat_rules,
            "  }",
            "  chain forward {",
            "    type filter hook forward priority filter; policy accept;",
            f'    iifname "{spec.name}" accept',
            f'    oifname "{spec.name}" ct state related,established accept',
            "  }",
            "}",
            "",
        ]
    )


def ensure(spec: InterfaceSpec, previous: NatRecord | None) -> NatRecord | None:
    """Make the interface's NAT match spec (None: no NAT); returns what to record. Idempotent."""
    if not spec.nat:
        remove(previous)
        return None
    check_available(spec)
    uplinks = _uplinks(spec)
    enable_forwarding(spec, uplinks.get(6))
    if tool() == "iptables":
        if previous and previous.get("tool") == "nft":
            remove(previous)
            previous = None
        rules = iptables_rules(spec, uplinks)
        for old in (previous or {}).get("rules", []):
            if old not in rules:
                _remove_iptables_rule(old)
        for rule in rules:
            if not _iptables_present(rule):
                link.run(_iptables(rule, "-A"))
        return {"tool": "iptables", "rules": rules}
    script = nft_script(spec, uplinks)
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


def remove(record: NatRecord | None) -> None:
    """Remove exactly the rules recorded (missing ones are fine)."""
    if not record:
        return
    if record.get("tool") == "iptables":
        if not shutil.which("iptables"):
            return
        for rule in record.get("rules", []):
            _remove_iptables_rule(rule)
    elif record.get("tool") == "nft" and shutil.which("nft"):
        if _nft_table_exists(record["table"]):
            link.run(["nft", "delete", "table", "inet", record["table"]])
