from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.errors import Conflict, ValidationFailed
from controller.models import Node
from controller.services.wireguard import host_networks, node_networks
from controller.ipam import (
    allocate_address,
    allocate_prefix,
    capacity,
    check_address,
    check_no_overlap,
    check_outside_node,
    check_prefix,
    host_cidr,
    json_safe_int,
    pool_totals,
    reserve_first,
    server_address,
    subnets_overlap,
)

SETTINGS = settings(max_examples=100, deadline=None)
SMALL_SUBNETS = ["10.8.0.0/29", "10.8.0.0/30", "192.168.7.8/29", "2001:db8::/125", "fd00:1::/124", "10.9.0.0/27"]

# a sequence of operations: True = allocate, an int = release the n-th currently allocated address
ops = st.lists(st.one_of(st.just(True), st.integers(min_value=0, max_value=1000)), max_size=60)


def excluded(subnet: str) -> set[str]:
    net = ipaddress.ip_network(subnet)
    out = {str(net.network_address), server_address(subnet).split("/")[0]}
    if net.version == 4:
        out.add(str(net.broadcast_address))
    return out


@SETTINGS
@given(subnet=st.sampled_from(SMALL_SUBNETS), operations=ops)
def test_allocations_and_releases_never_hand_out_an_address_twice(subnet: str, operations: list) -> None:
    net = ipaddress.ip_network(subnet)
    held: list[str] = []
    for op in operations:
        if op is True:
            if len(held) == capacity(subnet):
                with pytest.raises(ValidationFailed):
                    allocate_address(subnet, held)
                continue
            free = sorted(set(map(ipaddress.ip_address, net)) - set(map(ipaddress.ip_address, held))
                          - set(map(ipaddress.ip_address, excluded(subnet))))
            addr = allocate_address(subnet, held)
            assert addr not in held
            assert ipaddress.ip_address(addr) in net
            assert addr not in excluded(subnet)
            assert ipaddress.ip_address(addr) == free[0]  # lowest first: released ones come back first
            held.append(addr)
        elif held:
            held.pop(op % len(held))
    assert len(set(held)) == len(held)


@pytest.mark.parametrize(("subnet", "expected"), [("10.8.0.0/29", 5), ("10.8.0.0/30", 1), ("2001:db8::/125", 6),
                                                  ("10.8.0.0/24", 253), ("10.8.0.0/31", 1), ("10.8.0.0/32", 0)])
def test_exhaustion_after_exactly_capacity_allocations(subnet: str, expected: int) -> None:
    assert capacity(subnet) == expected
    held: list[str] = []
    for _ in range(expected):
        held.append(allocate_address(subnet, held, field="ipv6_address"))
    assert len(set(held)) == expected
    with pytest.raises(ValidationFailed) as e:
        allocate_address(subnet, held, field="ipv6_address")
    assert "is full" in e.value.message and f"({expected} address" in e.value.message
    assert "ipv6_address" in e.value.details


def test_full_subnet_message() -> None:
    with pytest.raises(ValidationFailed) as e:
        allocate_address("10.8.0.0/30", ["10.8.0.2/32"])
    assert e.value.details == {"ipv4_address": "subnet 10.8.0.0/30 is full (1 address in use)"}


def test_released_address_is_reused_lowest_first() -> None:
    held = ["10.8.0.2", "10.8.0.3", "10.8.0.4", "10.8.0.5"]
    assert allocate_address("10.8.0.0/24", held) == "10.8.0.6"
    held.remove("10.8.0.4")
    held.remove("10.8.0.3")
    assert allocate_address("10.8.0.0/24", held) == "10.8.0.3"


def test_taken_in_cidr_form_reserved_and_interface_form_subnet() -> None:
    assert allocate_address("10.0.0.1/24", ["10.0.0.2/32"], reserved=["10.0.0.3"]) == "10.0.0.4"
    assert allocate_address("2001:db8::1/64", ["2001:db8::2/128", "10.0.0.3"], field="ipv6_address") == "2001:db8::3"
    assert allocate_address("10.0.0.0/24", ["10.1.0.2", "2001:db8::2"]) == "10.0.0.2"  # outside/other version


def test_big_ipv6_subnet_is_never_enumerated() -> None:
    """Cost follows the used addresses, not the subnet: a /32 holds 2**96 addresses, so an allocator that
    walked the subnet would never return (no wall-clock bound here: the machine may be loaded)."""
    base = int(ipaddress.ip_address("2001:db8::"))
    taken = [str(ipaddress.ip_address(base + i)) for i in range(2, 20002)]
    assert allocate_address("2001:db8::/64", reversed(taken)) == str(ipaddress.ip_address(base + 20002))
    assert allocate_address("2001:db8::/32", []) == "2001:db8::2"
    assert capacity("2001:db8::/32") == 2**96 - 2


def test_server_address_and_host_cidr() -> None:
    assert server_address("10.8.0.0/24") == "10.8.0.1/24"
    assert server_address("10.0.1.7/24") == "10.0.1.1/24"
    assert server_address("2001:db8:1::/64") == "2001:db8:1::1/64"
    assert host_cidr("10.8.0.2") == "10.8.0.2/32"
    assert host_cidr("2001:DB8::0002") == "2001:db8::2/128"


@pytest.mark.parametrize(("address", "why"), [
    ("10.8.1.5", "outside subnet 10.8.0.0/24"),
    ("10.8.0.0", "network address"),
    ("10.8.0.255", "broadcast address"),
    ("10.8.0.1", "server's own address"),
    ("10.8.0.9", "reserved"),
    ("10.8.0.5/24", "single address"),
    ("2001:db8::5", "IPv6 address"),
    ("10.8.0.300", "not a valid IP address"),
    ("", "not a valid IP address"),
])
def test_check_address_rejects(address: str, why: str) -> None:
    with pytest.raises(ValidationFailed) as e:
        check_address("10.8.0.0/24", address, ["10.8.0.2"], "ipv4_address", reserved=["10.8.0.9"])
    assert why in e.value.details["ipv4_address"]


def test_check_address_taken_is_a_conflict_and_good_ones_are_normalised() -> None:
    with pytest.raises(Conflict) as e:
        check_address("10.8.0.0/24", "10.8.0.2/32", ["10.8.0.2/32"], "ipv4_address")
    assert e.value.details == {"ipv4_address": "10.8.0.2 is already in use"}
    assert check_address("10.8.0.0/24", " 10.8.0.7/32 ", ["10.8.0.2"], "ipv4_address") == "10.8.0.7"
    assert check_address("2001:db8::/64", "2001:DB8:0::ffff", [], "ipv6_address") == "2001:db8::ffff"
    with pytest.raises(ValidationFailed, match="server's own"):
        check_address("2001:db8::/64", "2001:db8::1", [], "ipv6_address")


def test_bad_subnets() -> None:
    for bad in ["10.8.0.0", "10.8.0.0/33", "nonsense/24", ""]:
        with pytest.raises(ValidationFailed):
            allocate_address(bad, [])


def test_overlap() -> None:
    assert subnets_overlap("10.8.0.0/24", "10.8.0.128/25")
    assert subnets_overlap("10.0.0.0/8", "10.8.0.1/24")
    assert not subnets_overlap("10.8.0.0/24", "10.8.1.0/24")
    assert not subnets_overlap("10.8.0.0/24", "2001:db8::/64")
    check_no_overlap("10.9.0.0/24", {"wg0": "10.8.0.0/24", "wg1": "2001:db8::/64"}, "ipv4_address")
    with pytest.raises(Conflict) as e:
        check_no_overlap("10.8.0.0/16", {"wg0": "10.7.0.0/24", "wg1": "10.8.3.0/24"}, "ipv4_address")
    assert e.value.details == {"ipv4_address": "10.8.0.0/16 overlaps wg1 (10.8.3.0/24)"}


# --- IPv6 prefix pools -----------------------------------------------------------------------------

def test_pool_allocation_like_seed() -> None:
    assert allocate_prefix("2001:db8:1::/48", 64, []) == "2001:db8:1::/64"
    assert allocate_prefix("2001:db8:1::/48", 64, ["2001:db8:1::/64"]) == "2001:db8:1:1::/64"
    # a bigger reserved block and a smaller taken one both push the candidate to the next aligned /64
    reserved = reserve_first("2001:db8:1::/48", 64, 100)
    assert reserved == ["2001:db8:1::/58", "2001:db8:1:40::/59", "2001:db8:1:60::/62"]
    assert allocate_prefix("2001:db8:1::/48", 64, ["2001:db8:1:64::5/128"], reserved) == "2001:db8:1:65::/64"
    totals = pool_totals("2001:db8:1::/48", 64, ["2001:db8:1:64::5/128", "2001:db8:1:70::/64"], reserved)
    assert totals == {"total": 65536, "used": 2, "reserved": 100, "available": 65434}


def test_pool_exhaustion_and_huge_totals() -> None:
    taken = [allocate_prefix("2001:db8::/126", 127, [])]
    taken.append(allocate_prefix("2001:db8::/126", 127, taken))
    assert taken == ["2001:db8::/127", "2001:db8::2/127"]
    with pytest.raises(ValidationFailed) as e:
        allocate_prefix("2001:db8::/126", 127, taken)
    assert e.value.details == {"prefix_length": "pool 2001:db8::/126 has no free /127 left (2 of 2 in use or reserved)"}
    huge = pool_totals("2001:db8::/48", 128, ["2001:db8::/64"])
    assert huge["total"] == 2**80 and huge["used"] == 2**64 and huge["available"] == 2**80 - 2**64
    assert json_safe_int(huge["total"]) == str(2**80)
    assert json_safe_int(65536) == 65536


@pytest.mark.parametrize(("pool", "length", "field", "why"), [
    ("10.0.0.0/8", 16, "prefix", "not an IPv6 prefix"),
    ("2001:db8::1/48", 64, "prefix", "host bits"),
    ("2001:db8::", 64, "prefix", "CIDR"),
    ("garbage", 64, "prefix", "CIDR"),
    ("2001:db8::/48", 48, "prefix_length", "between 49 and 128"),
    ("2001:db8::/48", 129, "prefix_length", "between 49 and 128"),
    ("2001:db8::/48", "64", "prefix_length", "not an integer"),
    ("2001:db8::/48", True, "prefix_length", "not an integer"),
])
def test_pool_validation(pool: str, length: int, field: str, why: str) -> None:
    for call in (lambda: allocate_prefix(pool, length, []), lambda: pool_totals(pool, length, [])):
        with pytest.raises(ValidationFailed) as e:
            call()
        assert why in e.value.details[field]


def test_check_prefix() -> None:
    pool = "2001:db8::/48"
    assert check_prefix(pool, "2001:db8:0:5::/64", 64, ["2001:db8::/64"]) == "2001:db8:0:5::/64"
    with pytest.raises(Conflict):
        check_prefix(pool, "2001:db8::/64", 64, ["2001:db8::/64"])
    for bad, why in [("2001:db8:0:5::1/64", "aligned"), ("2001:db9::/64", "outside"), ("2001:db8::/56", "/64"),
                     ("2001:db8:0:ff::/64", "reserved")]:
        with pytest.raises(ValidationFailed) as e:
            check_prefix(pool, bad, 64, [], ["2001:db8:0:ff::/64"])
        assert why in e.value.details["custom_prefix"]


pool_ops = st.lists(st.one_of(st.just(True), st.integers(min_value=0, max_value=1000)), max_size=40)


@SETTINGS
@given(pool_len=st.integers(min_value=112, max_value=122), extra=st.integers(min_value=1, max_value=5),
       reserved_raw=st.lists(st.tuples(st.integers(min_value=0, max_value=2**16 - 1), st.integers(min_value=100, max_value=128)),
                             max_size=4),
       operations=pool_ops)
def test_prefix_allocations_never_overlap_and_are_aligned(pool_len: int, extra: int, reserved_raw: list,
                                                          operations: list) -> None:
    pool = ipaddress.ip_network(f"2001:db8::/{pool_len}")
    length = pool_len + extra
    # reserved prefixes of any size, inside, around or straddling the pool
    reserved = [str(ipaddress.ip_network((int(pool.network_address) + off, plen), strict=False))
                for off, plen in reserved_raw]
    held: list[str] = []
    for op in operations:
        if op is True:
            totals = pool_totals(str(pool), length, held, reserved)
            if totals["available"] == 0:
                with pytest.raises(ValidationFailed):
                    allocate_prefix(str(pool), length, held, reserved)
                continue
            new = ipaddress.ip_network(allocate_prefix(str(pool), length, held, reserved))  # strict: aligned
            assert new.prefixlen == length and new.subnet_of(pool)
            assert not any(new.overlaps(ipaddress.ip_network(p)) for p in held + reserved)
            # lowest first: every aligned block below it is taken or reserved
            for below in pool.subnets(new_prefix=length):
                if below == new:
                    break
                assert any(below.overlaps(ipaddress.ip_network(p)) for p in held + reserved)
            assert pool_totals(str(pool), length, held + [str(new)], reserved)["available"] == totals["available"] - 1
            held.append(str(new))
        elif held:
            held.pop(op % len(held))


# --- a WireGuard subnet and the node's own networks ---------------------------------------------------------

@pytest.mark.parametrize("subnet, field, why", [
    ("127.0.0.0/24", "ipv4_address", "loopback"),
    ("::1/128", "ipv6_address", "loopback"),
    ("169.254.169.0/24", "ipv4_address", "link-local"),  # the cloud metadata address
    ("fe80::/64", "ipv6_address", "link-local"),
    ("0.0.0.0/24", "ipv4_address", "this network"),
    ("224.0.0.0/24", "ipv4_address", "multicast"),
    ("240.0.0.0/8", "ipv4_address", "reserved"),
    ("::ffff:10.0.0.0/120", "ipv6_address", "IPv4-mapped"),
    ("198.51.100.0/24", "ipv4_address", "public address"),  # contains the node's public address
    ("172.31.0.0/16", "ipv4_address", "private address"),
    ("2001:db8:7::/48", "ipv6_address", "public address"),
])
def test_subnets_overlapping_the_node_are_refused(subnet: str, field: str, why: str) -> None:
    node = {"the node's public address": "198.51.100.7/32", "the node's private address": "172.31.5.9/32",
            "the node's public address (v6)": "2001:db8:7::1/128"}
    with pytest.raises(ValidationFailed) as err:
        check_outside_node(subnet, node, field)
    assert err.value.status == 422 and list(err.value.details) == [field]
    assert why in err.value.message and "overlaps the node's own networks" in err.value.message


@pytest.mark.parametrize("subnet", ["10.8.0.0/24", "198.51.101.0/24", "fd00:8::/64", "100.64.0.0/24"])
def test_subnets_apart_from_the_node_pass(subnet: str) -> None:
    check_outside_node(subnet, {"the node's public address": "198.51.100.7/32"})


def test_node_networks_from_what_the_controller_knows() -> None:
    ec2 = Node(provider="ec2", public_ip="198.51.100.7", private_ip="172.31.5.9")
    assert node_networks(ec2) == {"the node's public address": "198.51.100.7/32",
                                  "the node's private address": "172.31.5.9/32"}
    assert node_networks(Node(provider="ec2", public_ip=None, private_ip=None)) == {}
    # a local node runs on this machine: its interfaces' networks are the node's
    local = node_networks(Node(provider="local", public_ip="127.0.0.1", private_ip="127.0.0.1"))
    assert "127.0.0.0/8" in local.values() and set(host_networks().values()) <= set(local.values())
    lo = next(k for k, v in local.items() if v == "127.0.0.0/8").split()[1]
    assert "127.0.0.0/8" not in host_networks({lo}).values()  # a server's own interface is left out
