"""Addresses a node must not be made to reach on someone else's behalf: loopback, private, link-local
(cloud metadata), CGNAT, multicast, reserved, ULA — and the IPv4-mapped, 6to4 and NAT64 forms of them.

`blocked_reason(ip)` classifies one address (pure, no I/O). `BLOCKED_NETWORKS` is the list itself and
`EMBEDDED_NETWORKS` its IPv4 ranges in IPv6 clothing, for every user of the same policy: tcping refuses these
targets unless diagnostics.allow_private_targets is on; egress rules for subscribers block them.
"""

from __future__ import annotations

import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: (network, what an address in it is). The ranges do not overlap.
BLOCKED_RANGES: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), reason)
    for cidr, reason in (
        # IPv4
        ("0.0.0.0/8", 'an unspecified ("this network") address'),  # RFC 1122; 0.0.0.0 reaches the node itself
        ("10.0.0.0/8", "a private address"),  # RFC 1918
        ("100.64.0.0/10", "a shared (CGNAT) address"),  # RFC 6598: the provider's side of carrier NAT
        ("127.0.0.0/8", "a loopback address"),  # RFC 1122: the node's own services
        ("169.254.0.0/16", "a link-local address (cloud metadata)"),  # RFC 3927; 169.254.169.254 is IMDS
        ("172.16.0.0/12", "a private address"),  # RFC 1918
        ("192.168.0.0/16", "a private address"),  # RFC 1918
        ("224.0.0.0/4", "a multicast address"),  # RFC 5771
        ("240.0.0.0/4", "a reserved address"),  # RFC 1112 class E, and 255.255.255.255 broadcast
        # IPv6
        ("::1/128", "a loopback address"),  # RFC 4291
        ("::/128", "an unspecified address"),  # RFC 4291; like 0.0.0.0, reaches the node itself
        ("fc00::/7", "a unique local (private) address"),  # RFC 4193 ULA; AWS's IPv6 IMDS is fd00:ec2::254
        ("fe80::/10", "a link-local address"),  # RFC 4291
        ("ff00::/8", "a multicast address"),  # RFC 4291
    )
)
#: The blocked networks alone (IPv4 and IPv6), for routing rules and firewalls.
BLOCKED_NETWORKS: tuple[IPNetwork, ...] = tuple(network for network, _ in BLOCKED_RANGES)

#: RFC 6052's well-known NAT64 prefix: a DNS64 resolver's answer for an IPv4-only name; the IPv4 address is the
#: last 32 bits. (Network-specific NAT64 prefixes, e.g. 64:ff9b:1::/48, cannot be decoded without knowing them.)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
#: The article each embedding's name takes in a reason.
_FORMS = {"IPv4-mapped": "an IPv4-mapped", "6to4": "a 6to4", "NAT64": "a NAT64"}
#: Where each embedding puts the IPv4 address: (prefix, how far the IPv4 address is shifted left).
_EMBEDDINGS = (
    (ipaddress.IPv6Network("::ffff:0:0/96"), 0),  # RFC 4291 IPv4-mapped: ::ffff:a.b.c.d
    (ipaddress.IPv6Network("2002::/16"), 80),  # RFC 3056 6to4: 2002:aabb:ccdd::/48
    (_NAT64, 0),  # RFC 6052: 64:ff9b::a.b.c.d
)


def _embedded_networks() -> tuple[ipaddress.IPv6Network, ...]:
    out = []
    for prefix, shift in _EMBEDDINGS:
        for network in BLOCKED_NETWORKS:
            if network.version == 4:
                base = int(prefix.network_address) | (int(network.network_address) << shift)
                out.append(ipaddress.IPv6Network((base, prefix.prefixlen + network.prefixlen)))
    return tuple(out)


#: The IPv6 networks that stand for the blocked IPv4 ranges (IPv4-mapped, 6to4 and NAT64 forms), for rules
#: that match by CIDR: blocked_reason() recognises these addresses without the list.
EMBEDDED_NETWORKS: tuple[ipaddress.IPv6Network, ...] = _embedded_networks()


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv4-mapped (::ffff:0:0/96), 6to4 (2002::/16) or NAT64 (64:ff9b::/96) address
    stands for, with the form's name; None for any other IPv6 address."""
    if ip.ipv4_mapped is not None:
        return "IPv4-mapped", ip.ipv4_mapped
    if ip.sixtofour is not None:
        return "6to4", ip.sixtofour
    if ip in _NAT64:
        return "NAT64", ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def blocked_reason(ip: IPAddress | str) -> str | None:
    """Why ip may not be reached ("a loopback address", "an IPv4-mapped form of 127.0.0.1, a loopback
    address", ...), or None if it is an ordinary public address. A string is parsed first (ValueError if it
    is no address); an IPv6 zone ("fe80::1%eth0") does not matter."""
    if isinstance(ip, str):
        ip = ipaddress.ip_address(ip)
    for network, reason in BLOCKED_RANGES:
        if ip.version == network.version and ip in network:
            return reason
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = embedded_ipv4(ip)
        if embedded is not None:
            form, v4 = embedded
            inner = blocked_reason(v4)
            if inner is not None:
                return f"{_FORMS[form]} form of {v4}, {inner}"
    return None
