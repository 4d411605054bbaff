"""agent.addresses: which addresses tcping (and the egress rules) refuse. Pure: no packet is sent."""

from __future__ import annotations

import ipaddress

import pytest

from agent.addresses import BLOCKED_NETWORKS, EMBEDDED_NETWORKS, blocked_reason

#: Every range the policy names, with an address inside it and the words its reason must contain.
RANGES = [
    ("0.0.0.0/8", "0.0.0.0", "unspecified"),
    ("10.0.0.0/8", "10.1.2.3", "private"),
    ("100.64.0.0/10", "100.127.255.254", "CGNAT"),
    ("127.0.0.0/8", "127.0.0.1", "loopback"),
    ("169.254.0.0/16", "169.254.169.254", "cloud metadata"),  # AWS/GCP/Azure instance metadata
    ("172.16.0.0/12", "172.31.0.1", "private"),
    ("192.168.0.0/16", "192.168.1.1", "private"),
    ("224.0.0.0/4", "239.255.255.250", "multicast"),
    ("240.0.0.0/4", "255.255.255.255", "reserved"),
    ("::1/128", "::1", "loopback"),
    ("::/128", "::", "unspecified"),
    ("fc00::/7", "fd00:ec2::254", "unique local"),  # AWS's IPv6 metadata address
    ("fe80::/10", "fe80::1", "link-local"),
    ("ff00::/8", "ff02::1", "multicast"),
]


def test_the_exported_list_is_exactly_the_policy() -> None:
    assert BLOCKED_NETWORKS == tuple(ipaddress.ip_network(cidr) for cidr, _, _ in RANGES)
    assert all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network)) for n in BLOCKED_NETWORKS)


@pytest.mark.parametrize("cidr, address, words", RANGES, ids=[r[0] for r in RANGES])
def test_every_range_is_blocked_at_both_ends(cidr: str, address: str, words: str) -> None:
    network = ipaddress.ip_network(cidr)
    assert words in blocked_reason(address)
    for edge in (network[0], network[-1]):
        assert blocked_reason(edge) is not None, edge
        assert blocked_reason(str(edge)) == blocked_reason(edge)


@pytest.mark.parametrize("address", ["9.255.255.255", "11.0.0.0", "100.63.255.255", "100.128.0.0", "126.255.255.255",
                                     "128.0.0.0", "169.253.255.255", "169.255.0.0", "172.15.255.255", "172.32.0.0",
                                     "192.167.255.255", "192.169.0.0", "223.255.255.255", "::2", "fbff:ffff::",
                                     "fe00::", "fec0::"])
def test_neighbours_of_the_ranges_pass(address: str) -> None:
    assert blocked_reason(address) is None


@pytest.mark.parametrize("address", ["1.1.1.1", "8.8.8.8", "93.184.216.34", "203.0.113.10", "2606:4700:4700::1111",
                                     "2001:4860:4860::8888", "::ffff:1.1.1.1", "2002:808:808::1", "64:ff9b::808:808"])
def test_public_addresses_pass(address: str) -> None:
    assert blocked_reason(address) is None
    assert blocked_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("cidr, address, words", [r for r in RANGES if ":" not in r[1]],
                         ids=[r[0] for r in RANGES if ":" not in r[1]])
def test_ipv4_mapped_6to4_and_nat64_forms_are_blocked(cidr: str, address: str, words: str) -> None:
    v4 = ipaddress.IPv4Address(address)
    mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
    sixtofour = ipaddress.IPv6Address((0x2002 << 112) | (int(v4) << 80) | 1)
    nat64 = ipaddress.IPv6Address(f"64:ff9b::{v4}")
    assert blocked_reason(mapped) == f"an IPv4-mapped form of {v4}, {blocked_reason(v4)}"
    assert blocked_reason(sixtofour) == f"a 6to4 form of {v4}, {blocked_reason(v4)}"
    assert blocked_reason(nat64) == f"a NAT64 form of {v4}, {blocked_reason(v4)}"
    assert words in blocked_reason(mapped)


def test_reasons_read_well() -> None:
    assert blocked_reason("127.0.0.1") == "a loopback address"
    assert blocked_reason("169.254.169.254") == "a link-local address (cloud metadata)"
    assert blocked_reason("::ffff:169.254.169.254") == (
        "an IPv4-mapped form of 169.254.169.254, a link-local address (cloud metadata)")


def test_an_ipv6_zone_does_not_hide_a_link_local_address() -> None:
    assert blocked_reason("fe80::1%eth0") == "a link-local address"


def test_not_an_address_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        blocked_reason("localhost")


def test_embedded_networks_are_the_ipv6_forms_of_the_ipv4_ranges() -> None:
    v4_ranges = [n for n in BLOCKED_NETWORKS if n.version == 4]
    assert len(EMBEDDED_NETWORKS) == 3 * len(v4_ranges)
    for network in EMBEDDED_NETWORKS:
        assert blocked_reason(network[0]) is not None and blocked_reason(network[-1]) is not None, network
    assert ipaddress.ip_network("::ffff:169.254.0.0/112") in EMBEDDED_NETWORKS
    assert ipaddress.ip_network("2002:a9fe::/32") in EMBEDDED_NETWORKS
    assert ipaddress.ip_network("64:ff9b::a9fe:0/112") in EMBEDDED_NETWORKS
    # and nothing public: the addresses just outside each form of 127.0.0.0/8 pass
    for network in (ipaddress.ip_network("::ffff:127.0.0.0/104"), ipaddress.ip_network("2002:7f00::/24"),
                    ipaddress.ip_network("64:ff9b::7f00:0/104")):
        assert network in EMBEDDED_NETWORKS
        assert blocked_reason(network[-1] + 1) is None and blocked_reason(network[0] - 1) is None
