"""V2Ray's access and error log files turned into live log lines, and kept bounded.

V2Ray appends to its log files (opened O_APPEND, as is its redirected stdout), so truncating a file to zero
makes V2Ray's next line land at its start. The tailer reads whatever complete lines were added since its
last poll, hands each one on as (level, message), and truncates a file that grew past `max_bytes` once it
has read all of it. Lines written between that last read and the truncation (microseconds) are lost: the
live logs are best effort (DESIGN.md rule 5). If V2Ray writes faster than the lines can be streamed, the
backlog is skipped and the skip is reported as a line of its own, so the files stay bounded either way.

Error log lines look like `2024/05/01 10:00:00 [Warning] [3140262134] v2ray.com/core/...: text`; access log
lines like `2024/05/01 10:00:00 127.0.0.1:50000 accepted tcp:example.com:443 [vmess -> direct] email: x`.
The timestamp is dropped (the LogLine has its own), the level tag becomes the line's level, and anything
shaped like a UUID is redacted: user credentials never reach the logs.

mask_source_addresses() takes the subscriber out of an access log line: V2Ray 4.34 writes
`FROM STATUS TO [DETOUR] REASON email: EMAIL`, FROM being the client's address as Go prints it
(`203.0.113.7:51234`, `[2001:db8::7]:51234`; `udp:...` for some UDP inbounds), STATUS `accepted` or
`rejected` (then TO is empty and REASON says why). FROM becomes its network (`203.0.x.x`, `2001:db8:7::/48`,
the port dropped); the destination, detour, reason and email stay, since operators debug destinations.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from pathlib import Path
from typing import Callable, Sequence

from agent.v2ray.spec import redact_uuids

MAX_BYTES = 4 << 20
#: Read at most this much of one file per poll; the rest waits for the next poll.
READ_CHUNK = 1 << 20
#: A "line" without a newline this long is emitted anyway (cut), so one endless line cannot stall the tail.
MAX_LINE = 16 << 10

_TIMESTAMP = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? ")
_LEVEL_TAG = re.compile(r"^\[(Debug|Info|Warning|Error)\] ")
_LEVELS = {"Debug": "debug", "Info": "info", "Warning": "warning", "Error": "error"}
#: Go runtime and V2Ray start-up failures, printed without a level tag.
_FATAL = ("panic:", "fatal error:", "Failed to start", "main: failed")

#: emit(level, message)
Emit = Callable[[str, str], None]

#: An access log line: optional timestamp, optional network, the source, then the status.
_ACCESS_LINE = re.compile(
    r"(?P<lead>(?:\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? )?(?:(?:tcp|udp):)?)"
    r"(?P<source>\S*)(?P<rest> (?:accepted|rejected)(?: .*)?)", re.DOTALL,
)
#: The same source in V2Ray's error log: "...inbound: invalid request from 203.0.113.7:51234 > ...".
_REQUEST_FROM = re.compile(
    r"(?P<lead>invalid request from (?:(?:tcp|udp):)?)(?P<source>\[[^\]\s]*\](?::\d+)?|[^\s:]+:\d+)"
)
#: What this module's masking produces (so masking twice changes nothing).
_MASKED = re.compile(r"\d{1,3}\.\d{1,3}\.x\.x|[0-9a-f:]+/48|<source>")
IPV6_MASK_PREFIX = 48


def mask_address(source: str) -> str:
    """A client address (`ip:port`, `[ipv6]:port`, or a bare IP) reduced to its network, port dropped:
    IPv4 to its /16 written `203.0.x.x`, IPv6 to its /48 (`2001:db8:7::/48`; IPv4-mapped ones as IPv4).
    Anything else becomes `<source>`: what cannot be read cannot be kept either."""
    if _MASKED.fullmatch(source):
        return source
    host = source
    if host.startswith("["):
        host = host[1:host.find("]")] if "]" in host else host[1:]
    elif host.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has more colons)
        host = host.rsplit(":", 1)[0]
    host = host.split("%", 1)[0]  # an IPv6 zone
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "<source>"
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if isinstance(address, ipaddress.IPv4Address):
        first, second = str(address).split(".")[:2]
        return f"{first}.{second}.x.x"
    return str(ipaddress.IPv6Network((address, IPV6_MASK_PREFIX), strict=False))


def mask_source_addresses(message: str) -> str:
    """message (a V2Ray access log line, with or without its timestamp) with the subscriber's source address
    masked by mask_address(); the destination and the rest are kept. The same source in the error log's
    "invalid request from ADDR" is masked too; other lines come back unchanged."""
    line = _ACCESS_LINE.fullmatch(message)
    if line is not None:
        return line["lead"] + mask_address(line["source"]) + line["rest"]
    if "invalid request from " in message:
        return _REQUEST_FROM.sub(lambda m: m["lead"] + mask_address(m["source"]), message)
    return message


def parse_line(line: str, access: bool) -> tuple[str, str]:
    """(level, message) of one log line; access log lines are "info"."""
    text = _TIMESTAMP.sub("", redact_uuids(line.rstrip()), count=1)
    if access:
        return "info", text
    tag = _LEVEL_TAG.match(text)
    if tag:
        return _LEVELS[tag.group(1)], text[tag.end():]
    return ("error" if text.startswith(_FATAL) else "info"), text


@dataclasses.dataclass
class _Followed:
    path: Path
    access: bool
    inode: int = 0
    offset: int = 0
    partial: bytes = b""


class LogTailer:
    """Follows a few log files; poll() forwards their new lines. Not thread-safe: poll from one place."""

    def __init__(self, files: Sequence[tuple[Path, bool]], emit: Emit, max_bytes: int = MAX_BYTES) -> None:
        """files: (path, is_access_log). Lines already in the files are not forwarded."""
        self.emit = emit
        self.max_bytes = max_bytes
        self._files = [_Followed(Path(path), access) for path, access in files]
        for followed in self._files:
            try:
                st = followed.path.stat()
            except OSError:
                continue
            followed.inode, followed.offset = st.st_ino, st.st_size

    def poll(self) -> int:
        """Forward every complete new line; returns how many."""
        return sum(self._poll_one(followed) for followed in self._files)

    def _poll_one(self, f: _Followed) -> int:
        try:
            st = f.path.stat()
        except OSError:
            return 0
        if st.st_ino != f.inode or st.st_size < f.offset:  # recreated or truncated: read from its start
            f.inode, f.offset, f.partial = st.st_ino, 0, b""
        backlog = st.st_size - f.offset
        if backlog > self.max_bytes:
            self._truncate(f)
            self.emit("warning", f"{f.path.name}: {backlog} bytes of V2Ray log skipped (written faster than streamed)")
            return 0
        if backlog == 0:
            return 0
        with open(f.path, "rb") as handle:
            handle.seek(f.offset)
            data = handle.read(min(backlog, READ_CHUNK))
        f.offset += len(data)
        lines = (f.partial + data).split(b"\n")
        f.partial = lines.pop()
        if len(f.partial) > MAX_LINE:
            lines.append(f.partial)
            f.partial = b""
        count = 0
        for raw in lines:
            if raw.strip():
                self.emit(*parse_line(raw.decode(errors="replace"), f.access))
                count += 1
        if f.offset >= st.st_size and st.st_size > self.max_bytes:
            self._truncate(f)
        return count

    @staticmethod
    def _truncate(f: _Followed) -> None:
        try:
            os.truncate(f.path, 0)
        except OSError:
            return
        f.offset, f.partial = 0, b""
