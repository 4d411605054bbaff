"""Address and prefix management for WireGuard servers and IPv6 prefix pools (seed 001). Pure: no I/O.

Callers pass in what is already in use (``taken``) and what must never be handed out (``reserved``);
nothing here remembers anything, so the services can persist allocations however they like.

Conventions:
- A server's subnet may be written as a network (``10.8.0.0/24``) or in interface form (``10.8.0.1/24``).
- The subnet's first usable address is the server's own (``10.8.0.1``, ``2001:db8::1``); clients get the rest.
  IPv4 skips the network and broadcast addresses; IPv6 skips the network (subnet-router anycast) address
  and has no broadcast. /31 and /127 are point-to-point (both addresses usable, the first is the server's).
- Addresses are returned bare and compressed (``10.8.0.2``, ``2001:db8::2``); :func:`host_cidr` adds /32 or /128.
- Allocation is lowest-first, so a released address (or prefix) is the next one handed out.
- Errors: ``ValidationFailed`` for bad input and exhaustion, ``Conflict`` for "already in use / overlaps",
  both with ``details = {field: why}``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Union

from controller.errors import Conflict, ValidationFailed

Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

JSON_SAFE_MAX = 2**53 - 1  # largest integer a JavaScript number holds exactly


def _fail(field: str, why: str) -> ValidationFailed:
    return ValidationFailed(f"{field}: {why}", details={field: why})


def _addresses(n: int) -> str:
    return f"{n} address" if n == 1 else f"{n} addresses"


def parse_subnet(value: str, field: str = "subnet") -> Network:
    """A subnet in network or interface form (``10.8.0.1/24`` -> ``10.8.0.0/24``); ValidationFailed if malformed."""
    if not isinstance(value, str) or "/" not in value:
        raise _fail(field, f"{value!r} is not a subnet in CIDR form (e.g. 10.8.0.0/24)")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise _fail(field, f"{value!r} is not a valid subnet") from None


def _parse_host(value: str) -> Address:
    """An address, bare or in interface form (``10.8.0.3/32``); ValueError if malformed."""
    return ipaddress.ip_interface(value.strip()).ip


def _client_range(net: Network) -> tuple[int, int]:
    """[first, last] integer range of client addresses (server's own excluded); empty if first > last."""
    lo, hi = int(net.network_address), int(net.broadcast_address)
    host_bits = net.max_prefixlen - net.prefixlen
    if host_bits >= 2:
        lo += 1  # network address (IPv4) / subnet-router anycast (IPv6)
        if net.version == 4:
            hi -= 1  # broadcast
    # lo is now the server's own address
    return lo + 1, hi


def server_address(subnet: str, field: str = "subnet") -> str:
    """The server's interface address (first usable host) in CIDR form, e.g. ``10.8.0.1/24``."""
    net = parse_subnet(subnet, field)
    first, _ = _client_range(net)
    return f"{ipaddress.ip_address(first - 1)}/{net.prefixlen}"


def host_cidr(address: str) -> str:
    """A single address as a host route: ``10.8.0.2`` -> ``10.8.0.2/32``, ``2001:db8::2`` -> ``2001:db8::2/128``."""
    ip = _parse_host(address)
    return f"{ip}/{ip.max_prefixlen}"


def capacity(subnet: str, field: str = "subnet") -> int:
    """How many client addresses the subnet holds (server, network and broadcast excluded)."""
    first, last = _client_range(parse_subnet(subnet, field))
    return max(0, last - first + 1)


def _used_in_range(net: Network, first: int, last: int, values: Iterable[str]) -> list[int]:
    used: set[int] = set()
    for value in values:
        ip = _parse_host(value)
        if ip.version == net.version and first <= int(ip) <= last:
            used.add(int(ip))
    return sorted(used)


def allocate_address(subnet: str, taken: Iterable[str], *, reserved: Iterable[str] = (),
                     field: str = "ipv4_address") -> str:
    """The lowest free client address of ``subnet`` not in ``taken`` or ``reserved`` (bare or CIDR entries).

    Walks up from the first client address over the *sorted* used set, so it never enumerates the subnet:
    cost is O(n log n) in the number of used addresses, whatever the subnet size.
    """
    net = parse_subnet(subnet, "subnet")
    first, last = _client_range(net)
    used = _used_in_range(net, first, last, [*taken, *reserved])
    candidate = first
    for u in used:
        if u > candidate:
            break
        if u == candidate:
            candidate += 1
    if candidate > last:
        raise _fail(field, f"subnet {net} is full ({_addresses(len(used))} in use)")
    return str(ipaddress.ip_address(candidate))


def check_address(subnet: str, address: str, taken: Iterable[str], field: str = "ipv4_address",
                  *, reserved: Iterable[str] = ()) -> str:
    """Check a client-chosen address (bare, or with a /32 or /128 prefix) and return it bare and normalised.

    ``taken`` must not contain the client's own current address when checking an update.
    Taken -> Conflict; anything else wrong -> ValidationFailed; both name ``field``.
    """
    net = parse_subnet(subnet, "subnet")
    try:
        iface = ipaddress.ip_interface(address.strip())
    except (ValueError, AttributeError):
        raise _fail(field, f"{address!r} is not a valid IP address") from None
    ip = iface.ip
    if ip.version != net.version:
        raise _fail(field, f"{ip} is an IPv{ip.version} address; subnet {net} is IPv{net.version}")
    if "/" in address and iface.network.prefixlen != ip.max_prefixlen:
        raise _fail(field, f"{address} must be a single address (/{ip.max_prefixlen})")
    if ip not in net:
        raise _fail(field, f"{ip} is outside subnet {net}")
    first, last = _client_range(net)
    n = int(ip)
    if n == first - 1:
        raise _fail(field, f"{ip} is the server's own address in {net}")
    if n < first:
        raise _fail(field, f"{ip} is the network address of {net}")
    if n > last:
        raise _fail(field, f"{ip} is the broadcast address of {net}")
    if n in _used_in_range(net, n, n, reserved):
        raise _fail(field, f"{ip} is reserved")
    if n in _used_in_range(net, n, n, taken):
        raise Conflict(f"{field}: {ip} is already in use", details={field: f"{ip} is already in use"})
    return str(ip)


def subnets_overlap(a: str, b: str) -> bool:
    """Whether two subnets share any address (different IP versions never do)."""
    na, nb = parse_subnet(a), parse_subnet(b)
    return na.version == nb.version and na.overlaps(nb)  # type: ignore[arg-type]


def check_no_overlap(new: str, existing: Mapping[str, str], field: str = "ipv4_address") -> None:
    """Conflict naming the first existing subnet (``name -> subnet``) that ``new`` overlaps."""
    net = parse_subnet(new, field)
    for name, other in existing.items():
        if subnets_overlap(str(net), other):
            why = f"{net} overlaps {name} ({parse_subnet(other)})"
            raise Conflict(f"{field}: {why}", details={field: why})


#: what a WireGuard subnet may never overlap on any node, whatever the node reports: the node itself (loopback,
#: "this network", unspecified), link-local (and the cloud metadata address in it), multicast, reserved space
#: and IPv4-mapped IPv6
NODE_RESERVED_NETWORKS: dict[str, tuple[str, ...]] = {
    "loopback": ("127.0.0.0/8", "::1/128"),
    "link-local": ("169.254.0.0/16", "fe80::/10"),
    "this network": ("0.0.0.0/8", "::/128"),
    "multicast": ("224.0.0.0/4", "ff00::/8"),
    "reserved": ("240.0.0.0/4",),
    "IPv4-mapped": ("::ffff:0:0/96",),
}


def check_outside_node(subnet: str, node_networks: Mapping[str, str], field: str = "ipv4_address") -> None:
    """ValidationFailed naming ``field`` if ``subnet`` overlaps a built-in reserved network or one of the
    node's own (``what -> CIDR``, e.g. ``"the node's public address" -> "198.51.100.7/32"``): the node would
    route its own traffic into the tunnel."""
    net = parse_subnet(subnet, field)
    named = [(f"{what} {cidr}", cidr) for what, cidrs in NODE_RESERVED_NETWORKS.items() for cidr in cidrs]
    named += [(f"{what} ({cidr})", cidr) for what, cidr in node_networks.items()]
    for what, cidr in named:
        if subnets_overlap(str(net), cidr):
            raise _fail(field, f"{net} overlaps the node's own networks: {what}")


# --- IPv6 prefix pools ---------------------------------------------------------------------------

def parse_pool(pool: str, prefix_length: int, *, pool_field: str = "prefix",
               length_field: str = "prefix_length") -> ipaddress.IPv6Network:
    """Validate a pool and the length of the prefixes it hands out."""
    net = parse_subnet(pool, pool_field)
    if ipaddress.ip_interface(pool.strip()).ip != net.network_address:
        raise _fail(pool_field, f"{pool} has host bits set; did you mean {net}?")
    if not isinstance(net, ipaddress.IPv6Network):
        raise _fail(pool_field, f"{net} is not an IPv6 prefix")
    if isinstance(prefix_length, bool) or not isinstance(prefix_length, int):
        raise _fail(length_field, f"{prefix_length!r} is not an integer")
    if not net.prefixlen < prefix_length <= 128:
        raise _fail(length_field, f"must be between {net.prefixlen + 1} and 128 for pool {net}, not {prefix_length}")
    return net


def _blocked(pool: ipaddress.IPv6Network, values: Iterable[str]) -> list[tuple[int, int]]:
    """Sorted, clipped [start, end] integer ranges of the given prefixes (or addresses) that touch the pool."""
    lo, hi = int(pool.network_address), int(pool.broadcast_address)
    ranges = []
    for value in values:
        net = ipaddress.ip_network(value.strip(), strict=False)
        if net.version == 6 and net.overlaps(pool):  # type: ignore[arg-type]
            ranges.append((max(lo, int(net.network_address)), min(hi, int(net.broadcast_address))))
    return sorted(ranges)


def _block_count(pool: ipaddress.IPv6Network, prefix_length: int, ranges: list[tuple[int, int]]) -> int:
    """How many ``prefix_length`` blocks of the pool the ranges touch (overlaps counted once)."""
    shift = 128 - prefix_length
    count, covered_to = 0, -1  # highest block index already counted
    for start, end in ranges:
        a, b = max(start >> shift, covered_to + 1), end >> shift
        if b >= a:
            count += b - a + 1
            covered_to = b
    return count


def allocate_prefix(pool: str, prefix_length: int, taken: Iterable[str], reserved: Iterable[str] = ()) -> str:
    """The lowest aligned ``/prefix_length`` of ``pool`` overlapping neither ``taken`` nor ``reserved``."""
    net = parse_pool(pool, prefix_length)
    size = 1 << (128 - prefix_length)
    end = int(net.broadcast_address)
    candidate = int(net.network_address)
    ranges = _blocked(net, [*taken, *reserved])
    for start, stop in ranges:
        if stop < candidate:
            continue
        if start >= candidate + size:
            break
        candidate = (stop // size + 1) * size  # first aligned block after this range
        if candidate > end:
            break
    if candidate > end:
        total = 1 << (prefix_length - net.prefixlen)
        raise _fail("prefix_length", f"pool {net} has no free /{prefix_length} left "
                                     f"({_block_count(net, prefix_length, ranges)} of {total} in use or reserved)")
    return f"{ipaddress.IPv6Address(candidate)}/{prefix_length}"


def check_prefix(pool: str, prefix: str, prefix_length: int, taken: Iterable[str], reserved: Iterable[str] = (),
                 field: str = "custom_prefix") -> str:
    """Check a caller-chosen prefix (seed 001's ``custom_prefix``) and return it normalised."""
    net = parse_pool(pool, prefix_length)
    try:
        want = ipaddress.ip_network(prefix.strip(), strict=True)
    except (ValueError, AttributeError):
        raise _fail(field, f"{prefix!r} is not an aligned prefix in CIDR form (e.g. 2001:db8::/64)") from None
    if not isinstance(want, ipaddress.IPv6Network) or not want.subnet_of(net):
        raise _fail(field, f"{prefix} is outside pool {net}")
    if want.prefixlen != prefix_length:
        raise _fail(field, f"{prefix} must be a /{prefix_length}, the pool's prefix length")
    if _blocked(want, reserved):
        raise _fail(field, f"{want} overlaps a reserved prefix")
    if _blocked(want, taken):
        raise Conflict(f"{field}: {want} is already allocated", details={field: f"{want} is already allocated"})
    return str(want)


def reserve_first(pool: str, prefix_length: int, count: int) -> list[str]:
    """The pool's first ``count`` prefixes as a short list of CIDRs (seed 001's ``reserved_prefixes: 100``)."""
    net = parse_pool(pool, prefix_length)
    total = 1 << (prefix_length - net.prefixlen)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= total:
        raise _fail("reserved_prefixes", f"must be an integer between 0 and {total}, not {count!r}")
    if count == 0:
        return []
    first = net.network_address
    last = ipaddress.IPv6Address(int(first) + (count << (128 - prefix_length)) - 1)
    return [str(n) for n in ipaddress.summarize_address_range(first, last)]


def pool_totals(pool: str, prefix_length: int, taken: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, int]:
    """``total``, ``used`` (by taken), ``reserved`` (reserved and not taken) and ``available`` prefixes, as ints.

    Counts may exceed 2**53 (a /48 pool of /128s holds 2**80); pass them through :func:`json_safe_int`.
    """
    net = parse_pool(pool, prefix_length)
    total = 1 << (prefix_length - net.prefixlen)
    taken_ranges = _blocked(net, taken)
    used = _block_count(net, prefix_length, taken_ranges)
    blocked = _block_count(net, prefix_length, sorted(taken_ranges + _blocked(net, reserved)))
    return {"total": total, "used": used, "reserved": blocked - used, "available": total - blocked}


def json_safe_int(n: int) -> int | str:
    """``n`` itself if a JSON/JavaScript number holds it exactly, else its decimal string."""
    return n if -JSON_SAFE_MAX <= n <= JSON_SAFE_MAX else str(n)
