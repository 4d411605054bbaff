"""``vpnfleet``: the operator's command line for a vpnfleet controller (REST API and live SSE streams).

Settings: ``--url`` / $VPNFLEET_URL (default: the signed-in session's, else https://127.0.0.1:8080). Credentials,
first found wins: the API key from ``--api-key`` or $VPNFLEET_API_KEY; the session ``vpnfleet login`` cached
($XDG_CONFIG_HOME/vpnfleet/session.json, for that URL only; its access token is refreshed when it expires); the
admin key file the controller wrote ($VPNFLEET_DATA_DIR, default ./data, + admin.key).
Over https the controller's certificate is checked against ``--ca-cert`` / $VPNFLEET_CA_CERT, else the
controller's own CA ($VPNFLEET_DATA_DIR/pki/ca.crt) when that file exists, else the system's trust store.
Every command takes ``--json`` to print the API's JSON instead of tables. Exit codes: 0 ok, 1 error, 2 usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import re
import ssl
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
from httpx_sse import SSEError, connect_sse
from rich.console import Console
from rich.table import Table
from rich.text import Text

from controller import __version__, cli_session
from controller.auth import ADMIN_KEY_FILE
from controller.cli_session import Session

DEFAULT_URL = "https://127.0.0.1:8080"
CA_ENV = "VPNFLEET_CA_CERT"
WAIT_TIMEOUT = 300.0
POLL_SECONDS = 0.5
#: the controller pings streams every 15 s; a silent minute means the connection is dead
STREAM_READ_TIMEOUT = 60.0
MAX_BACKOFF = 10.0
STATUS_STYLE = {"running": "green", "error": "bold red", "stopped": "dim", "deleted": "dim"}
LEVEL_STYLE = {"debug": "dim", "info": "", "warning": "yellow", "error": "red", "critical": "bold red"}
#: What a terminal would act on instead of printing: ESC sequences (CSI; OSC, DCS, SOS, PM and APC strings up
#: to their terminator; the other escapes), then every C0 control but tab, DEL and the C1 controls.
_TERMINAL_CONTROLS = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
    r"|[\x00-\x08\x0a-\x1f\x7f-\x9f]"
)


def terminal_safe(value: object) -> str:
    """Text a node (or anyone) supplied, as it may be printed: terminal control characters removed, so a log
    line, a host name or a component's error cannot move the cursor, retitle the window or rewrite the screen."""
    return _TERMINAL_CONTROLS.sub("", str(value))


def plain(value: object, style: str = "") -> Text:
    """terminal_safe text as a rich Text: printed as is (rich reads no markup in it)."""
    return Text(terminal_safe(value), style=style)


# -- the API ------------------------------------------------------------------------------------------------

class ApiError(Exception):
    """Anything that went wrong talking to the controller. ``network`` is true when it was not reached."""

    def __init__(self, message: str, code: str | None = None, request_id: str | None = None,
                 network: bool = False) -> None:
        super().__init__(message)
        self.message, self.code, self.request_id, self.network = message, code, request_id, network

    def __str__(self) -> str:
        if self.code:
            return f"{self.message} ({self.code}, request {self.request_id or '-'})"
        return self.message


def missing_key_message() -> str:
    data_dir = os.environ.get("VPNFLEET_DATA_DIR") or "data"
    return (f"no API key: set VPNFLEET_API_KEY (or pass --api-key), or run where the controller's admin key "
            f"file {Path(data_dir) / ADMIN_KEY_FILE} is readable (set VPNFLEET_DATA_DIR to its data directory)")


class ApiClient:
    """A thin wrapper over httpx: adds the API key (or the signed-in session's access token, refreshed when it
    expires), decodes JSON, and turns every failure into ApiError."""

    PUBLIC = ("/api/v1/health",)

    def __init__(self, url: str, api_key: str | None, timeout: float = 30.0,
                 verify: ssl.SSLContext | bool = True, session: Session | None = None,
                 session_file: Path | None = None) -> None:
        self.url = url
        self._key = api_key
        #: used only without a key, and only for the URL it was made for (a token never goes elsewhere)
        self.session = session if session is not None and session.url == url else None
        self._session_file = session_file
        self._http = httpx.Client(base_url=url, timeout=httpx.Timeout(timeout, connect=5.0), verify=verify,
                                  headers={"User-Agent": f"vpnfleet-cli/{__version__}"})

    def close(self) -> None:
        self._http.close()

    def _headers(self, path: str) -> dict[str, str]:
        if self._key:
            return {"X-API-Key": self._key}
        if self.session is not None:
            if self.session.expired():
                self.refresh()
            return {"Authorization": f"Bearer {self.session.access_token}"}
        if path in self.PUBLIC:
            return {}  # with a key the health check tells more (version, agents); without one it still answers
        raise ApiError(missing_key_message())

    def refresh(self) -> None:
        """Trade the session's refresh token (single use) for a new pair, and cache the new one at once: the
        old one is spent whatever happens next."""
        assert self.session is not None
        try:
            response = self._http.post("/api/v1/auth/refresh", json={"refresh_token": self.session.refresh_token})
        except httpx.TransportError as exc:
            raise self._network_error(exc) from None
        if response.status_code != 200:
            err = self._api_error(response)
            if response.status_code in (401, 403):  # ended, revoked or reused: no use keeping it
                self._forget_session()
                raise ApiError(f"the signed-in session has ended ({err.message}): run `vpnfleet login` again",
                               err.code, err.request_id)
            raise err
        self.session = Session.from_tokens(self.url, response.json(), self.session.username)
        cli_session.save(self.session, self._session_file)

    def _forget_session(self) -> None:
        cli_session.delete(self._session_file)
        self.session = None

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: dict[str, Any] | None = None, auth: bool = True,
                headers: dict[str, str] | None = None) -> Any:
        """One API call. ``auth=False``: no credential (signing in), ``headers`` as given."""
        sent = {**(self._headers(path) if auth else {}), **(headers or {})}
        response = self._send(method, path, params, body, sent)
        if (auth and response.status_code == 401 and not self._key and self.session is not None
                and _error_code(response) == "TOKEN_EXPIRED"):
            self.refresh()  # expired early (clock skew): once more with a fresh token
            response = self._send(method, path, params, body, self._headers(path))
        if (auth and response.status_code == 401 and not self._key and self.session is not None
                and _error_code(response) == "TOKEN_INVALID"):
            self._forget_session()  # logged out elsewhere, revoked, or its account suspended
            err = self._api_error(response)
            raise ApiError(f"the signed-in session has ended ({err.message}): run `vpnfleet login` again",
                           err.code, err.request_id)
        if response.status_code >= 400:
            raise self._api_error(response)
        if response.status_code == 204:
            return None
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the controller sent a non-JSON answer (HTTP {response.status_code})") from None

    def _send(self, method: str, path: str, params: dict[str, Any] | None, body: dict[str, Any] | None,
              headers: dict[str, str]) -> httpx.Response:
        try:
            return self._http.request(method, path, params=_clean(params), json=body, headers=headers)
        except httpx.TransportError as exc:
            raise self._network_error(exc) from None

    def stream(self, path: str, params: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event name, data) from a Server-Sent Events endpoint until the server ends the stream."""
        headers = self._headers(path)
        timeout = httpx.Timeout(STREAM_READ_TIMEOUT, connect=5.0)
        try:
            with connect_sse(self._http, "GET", path, params=_clean(params), headers=headers,
                             timeout=timeout) as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    raise self._api_error(source.response)
                for sse in source.iter_sse():
                    try:
                        data = json.loads(sse.data)
                    except ValueError:
                        continue
                    if isinstance(data, dict):
                        yield sse.event, data
        except httpx.TransportError as exc:
            raise self._network_error(exc) from None
        except SSEError as exc:
            raise ApiError(f"the controller did not answer with an event stream: {exc}") from None

    def _network_error(self, exc: httpx.TransportError) -> ApiError:
        if isinstance(exc, httpx.ConnectError) and "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return ApiError(f"the controller at {self.url} has a certificate this CLI does not trust: pass its CA "
                            f"with --ca-cert or ${CA_ENV} (the controller's is DATA_DIR/pki/ca.crt)", network=True)
        if isinstance(exc, httpx.ConnectError) and self.url.startswith("https://") and (
                "WRONG_VERSION_NUMBER" in str(exc) or "record layer failure" in str(exc)):
            return ApiError(f"the controller at {self.url} does not speak https (try http://)", network=True)
        if isinstance(exc, httpx.ConnectError):
            return ApiError(f"cannot reach the controller at {self.url}", network=True)
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(f"the controller at {self.url} did not answer in time", network=True)
        return ApiError(f"lost the connection to the controller at {self.url} ({type(exc).__name__})", network=True)

    @staticmethod
    def _api_error(response: httpx.Response) -> ApiError:
        try:
            err = response.json()["error"]
            return ApiError(err["message"], err.get("code") or str(response.status_code), err.get("request_id"))
        except (ValueError, KeyError, TypeError):
            return ApiError(f"HTTP {response.status_code} from the controller", str(response.status_code),
                            response.headers.get("x-request-id"))


def _error_code(response: httpx.Response) -> str | None:
    try:
        return response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return None


def _clean(params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset query parameters; booleans as the API spells them."""
    if params is None:
        return None
    return {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items() if v is not None}


def find_ca_cert(explicit: str | None) -> Path | None:
    """The CA to verify the controller with: --ca-cert, $VPNFLEET_CA_CERT, or the controller's own CA file in
    $VPNFLEET_DATA_DIR (default ./data) when it exists; None: the system's trust store (e.g. a TLS proxy)."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CA_ENV):
        return Path(os.environ[CA_ENV])
    default = Path(os.environ.get("VPNFLEET_DATA_DIR") or "data") / "pki" / "ca.crt"
    return default if default.is_file() else None


def tls_verify(ca_cert: Path | None) -> ssl.SSLContext | bool:
    """httpx's verify=: trust only ca_cert when given (the controller's own CA), else the system's store."""
    if ca_cert is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_cert))
    except (OSError, ssl.SSLError) as exc:
        raise ApiError(f"cannot use the CA certificate {ca_cert}: {getattr(exc, 'strerror', None) or exc}") from None


def given_api_key(explicit: str | None) -> str | None:
    """A key given for this run: --api-key, else $VPNFLEET_API_KEY (either wins over a cached session)."""
    if explicit:
        return explicit.strip()
    if os.environ.get("VPNFLEET_API_KEY"):
        return os.environ["VPNFLEET_API_KEY"].strip()
    return None


def find_api_key(explicit: str | None) -> str | None:
    """A given key, else the controller's admin key file (when this runs where it is readable)."""
    given = given_api_key(explicit)
    if given:
        return given
    return admin_key_file()


def admin_key_file() -> str | None:
    path = Path(os.environ.get("VPNFLEET_DATA_DIR") or "data") / ADMIN_KEY_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


# -- output -------------------------------------------------------------------------------------------------

@dataclass
class Ctx:
    api: ApiClient
    out: Console
    err: Console
    as_json: bool

    def emit_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2), flush=True)

    def show(self, renderable: Any) -> None:
        """Print a table or grid without the trailing blanks rich pads cells with (friendlier to grep/awk)."""
        with self.out.capture() as captured:
            self.out.print(renderable)
        self.out.file.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
        self.out.file.flush()

    def progress(self, message: str) -> None:
        """Human progress notes: on stdout, or stderr when stdout carries JSON."""
        (self.err if self.as_json else self.out).print(plain(message))


def fmt_time(value: str | None, ms: bool = False) -> str:
    if not value:
        return "-"
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.timezone.utc)
    except ValueError:
        return value
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{t.microsecond // 1000:03d}" if ms else "") + "Z"


def fmt_bytes(n: int | float | None) -> str:
    value = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # unreachable


def fmt_duration(seconds: int | float | None) -> str:
    s = int(seconds or 0)
    d, h, m = s // 86400, s % 86400 // 3600, s % 3600 // 60
    return f"{d}d {h}h {m}m" if d else f"{h}h {m}m {s % 60}s" if h else f"{m}m {s % 60}s"


def status_text(status: str) -> Text:
    return plain(status, style=STATUS_STYLE.get(status, "yellow"))


def table(*columns: str) -> Table:
    t = Table(box=None, header_style="bold", pad_edge=False)
    for c in columns:
        t.add_column(c, no_wrap=c in ("ID", "TIME", "CREATED"))
    return t


def key_values(rows: list[tuple[str, Any]]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else plain("-" if value in (None, "") else value))
    return grid


# -- node references --------------------------------------------------------------------------------------

def match_nodes(ref: str, nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nodes ``ref`` names: an exact name wins over an id prefix (pure, so it is tested without a server)."""
    by_name = [n for n in nodes if n["name"] == ref]
    return by_name or [n for n in nodes if n["id"].startswith(ref.lower())]


def resolve_node(api: ApiClient, ref: str) -> str:
    """A full uuid as is; otherwise the one live node whose name is ``ref`` or whose id starts with it."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    nodes: list[dict[str, Any]] = []
    page = 1
    while True:  # the search is a substring match; matching is finished here
        res = api.request("GET", "/api/v1/nodes", params={"search": ref, "page": page, "size": 500})
        nodes += res["items"]
        if page >= res["pages"]:
            break
        page += 1
    found = match_nodes(ref, nodes)
    if not found:
        raise ApiError(f"no node matches '{ref}' (give a node id, a unique id prefix or a node name)")
    if len(found) > 1:
        names = ", ".join(f"{n['id']} ({n['name']})" for n in found[:5])
        raise ApiError(f"'{ref}' is ambiguous: it matches {len(found)} nodes: {names}"
                       f"{', ...' if len(found) > 5 else ''}")
    return found[0]["id"]


def get_node(api: ApiClient, node_id: str) -> dict[str, Any]:
    return api.request("GET", f"/api/v1/nodes/{node_id}")


def wait_for_status(ctx: Ctx, node: dict[str, Any], target: str, timeout: float) -> dict[str, Any]:
    """Poll the node until it reaches ``target``; report each status change; fail on error or timeout."""
    started = time.monotonic()
    last = node["status"]
    while node["status"] != target:
        if node["status"] == "error":
            raise ApiError(f"node {node['id']} failed: {node.get('status_reason') or 'unknown reason'}")
        if time.monotonic() - started > timeout:
            raise ApiError(f"timed out after {timeout:g}s waiting for node {node['id']} to be {target} "
                           f"(it is {node['status']})")
        time.sleep(POLL_SECONDS)
        node = get_node(ctx.api, node["id"])
        if node["status"] != last:
            last = node["status"]
            reason = f" ({node['status_reason']})" if node.get("status_reason") else ""
            ctx.progress(f"  {last}{reason}  [{time.monotonic() - started:.1f}s]")
    return node


# -- node commands ------------------------------------------------------------------------------------------

def cmd_nodes_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    res = ctx.api.request("GET", "/api/v1/nodes", params={
        "status": args.status, "region": args.region, "online": args.online, "search": args.search,
        "include_deleted": True if args.all else None, "page": args.page, "size": args.size})
    if ctx.as_json:
        ctx.emit_json(res)
        return 0
    t = table("ID", "NAME", "REGION", "STATUS", "AGENT", "IP", "REV", "CREATED")
    for n in res["items"]:
        a = n["agent"]
        t.add_row(plain(n["id"]), plain(n["name"]), plain(n["region"]), status_text(n["status"]),
                  plain(a["connectivity"], style="green" if a["online"] else "dim"), plain(n["public_ip"] or "-"),
                  f"{a['applied_revision']}/{a['desired_revision']}", fmt_time(n["created_at"]))
    if not res["items"]:
        ctx.out.print("no nodes")
    else:
        ctx.show(t)
    if res["total"] > len(res["items"]):
        ctx.out.print(f"{len(res['items'])} of {res['total']} nodes (page {res['page']} of {res['pages']})",
                      style="dim")
    return 0


def show_node(ctx: Ctx, n: dict[str, Any]) -> None:
    if ctx.as_json:
        ctx.emit_json(n)
        return
    a = n["agent"]
    status = status_text(n["status"])
    if n.get("status_reason"):
        status.append(f" ({terminal_safe(n['status_reason'])})")
    ctx.show(key_values([
        ("ID", n["id"]), ("Name", n["name"]), ("Region", f"{n['region']} ({n['region_name']})"),
        ("Provider", n["provider"]), ("Instance", n["instance_id"]), ("Public IP", n["public_ip"]),
        ("Private IP", n["private_ip"]), ("Status", status), ("Status since", fmt_time(n["status_changed_at"])),
        ("Created", fmt_time(n["created_at"])), ("Deleted", fmt_time(n["deleted_at"]) if n["deleted_at"] else None),
    ]))
    ctx.out.print(Text("\nAgent", style="bold underline"))
    ctx.show(key_values([
        ("Connectivity", plain(a["connectivity"], style="green" if a["online"] else "dim")),
        ("Last seen", fmt_time(a["last_seen_at"])),
        ("Enrolled", fmt_time(a["enrolled_at"]) if a["enrolled"] else "no"),
        ("Version", a["version"]), ("Hostname", a["hostname"]),
        ("Capabilities", ", ".join(a["capabilities"])),
        ("Revision", f"{a['applied_revision']} applied / {a['desired_revision']} desired"
                     f"{'' if a['in_sync'] else '  (not in sync)'}"),
        ("Settings", json.dumps(a["settings"]) if a["settings"] else None),
        ("Telemetry dropped", a["telemetry_dropped"]),
        # entries the controller refused (usage for others' subscribers or peers, impossible values)
        ("Telemetry rejected", a.get("telemetry_rejected", 0)),
    ]))
    if a["components"]:
        t = table("COMPONENT", "STATE", "CONFIG", "ERROR")
        for c in a["components"]:
            state_style = "green" if c.get("state") == "ok" else "red"
            t.add_row(plain(c.get("name", "?")), plain(c.get("state"), style=state_style),
                      plain((c.get("config_hash") or "-")[:12]), plain(c.get("error") or ""))
        ctx.out.print()
        ctx.show(t)


def cmd_nodes_create(ctx: Ctx, args: argparse.Namespace) -> int:
    node = ctx.api.request("POST", "/api/v1/nodes", body={"region": args.region, "name": args.name})
    ctx.progress(f"node {node['id']} ({node['name']}) created in region {node['region']}: {node['status']}")
    if args.wait:
        node = wait_for_status(ctx, node, "running", args.timeout)
    show_node(ctx, node)
    return 0


def cmd_nodes_show(ctx: Ctx, args: argparse.Namespace) -> int:
    show_node(ctx, get_node(ctx.api, resolve_node(ctx.api, args.node)))
    return 0


def cmd_nodes_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    node = ctx.api.request("DELETE", f"/api/v1/nodes/{resolve_node(ctx.api, args.node)}")
    ctx.progress(f"node {node['id']} ({node['name']}): {node['status']}")
    if args.wait:
        node = wait_for_status(ctx, node, "deleted", args.timeout)
    if ctx.as_json:
        ctx.emit_json(node)
    return 0


def node_action(action: str, target: str | None) -> Callable[[Ctx, argparse.Namespace], int]:
    def run(ctx: Ctx, args: argparse.Namespace) -> int:
        node = ctx.api.request("POST", f"/api/v1/nodes/{resolve_node(ctx.api, args.node)}/{action}")
        ctx.progress(f"node {node['id']} ({node['name']}): {action} requested, status {node['status']}")
        if target and args.wait:
            node = wait_for_status(ctx, node, target, args.timeout)
        if ctx.as_json:
            ctx.emit_json(node)
        return 0
    return run


def cmd_nodes_metrics(ctx: Ctx, args: argparse.Namespace) -> int:
    res = ctx.api.request("GET", f"/api/v1/nodes/{resolve_node(ctx.api, args.node)}/metrics")
    if ctx.as_json:
        ctx.emit_json(res)
        return 0
    m = res["current"]
    if m is None:
        ctx.out.print("no metrics yet: the agent has not reported since the controller started")
        return 0
    ctx.show(key_values([
        ("Time", fmt_time(m["time"])), ("CPU", f"{m['cpu_percent']:.1f} %"),
        ("Memory", f"{fmt_bytes(m['memory']['used'])} / {fmt_bytes(m['memory']['total'])} "
                   f"({m['memory']['usage_percent']:.1f} %)"),
        ("Swap", f"{fmt_bytes(m['swap']['used'])} / {fmt_bytes(m['swap']['total'])}"),
        ("Disk", f"{fmt_bytes(m['disk']['used'])} / {fmt_bytes(m['disk']['total'])} "
                 f"({m['disk']['usage_percent']:.1f} %)"),
        ("Network", f"rx {fmt_bytes(m['network']['rx_bytes'])}, tx {fmt_bytes(m['network']['tx_bytes'])} "
                    "(since the previous sample)"),
        ("Load", " ".join(f"{x:.2f}" for x in m["load_average"])), ("Uptime", fmt_duration(m["uptime_seconds"])),
    ]))
    return 0


def cmd_nodes_info(ctx: Ctx, args: argparse.Namespace) -> int:
    i = ctx.api.request("GET", f"/api/v1/nodes/{resolve_node(ctx.api, args.node)}/info")
    if ctx.as_json:
        ctx.emit_json(i)
        return 0
    ctx.show(key_values([
        ("Alias", i["alias"]), ("Hostname", i["name"]), ("OS / arch", f"{i['os']} / {i['arch']}"),
        ("CPU", f"{i['cpu']} %"), ("Memory", f"{fmt_bytes(i['mem_used'])} / {fmt_bytes(i['mem_total'])}"),
        ("Swap", f"{fmt_bytes(i['swap_used'])} / {fmt_bytes(i['swap_total'])}"),
        ("Network", f"rx {fmt_bytes(i['netrx'])}, tx {fmt_bytes(i['nettx'])}"),
        ("Disk I/O", f"read {fmt_bytes(i['diskr'])}, written {fmt_bytes(i['diskw'])}"),
        ("System up", fmt_duration(i["sysup"])), ("Agent", f"{i['ver']}, up {fmt_duration(i['uptime'])}, "
                                                          f"log level {i['log']}"),
        ("TLS", i["tls"]), ("Certificate", i["crt"]),
    ]))
    return 0


def cmd_nodes_tcping(ctx: Ctx, args: argparse.Namespace) -> int:
    node_id = resolve_node(ctx.api, args.node)
    res = ctx.api.request("GET", f"/api/v1/nodes/{node_id}/tcping", params={"target": args.target})
    if ctx.as_json:
        ctx.emit_json(res)
    elif res["connected"]:
        ctx.out.print(plain(f"{res['target']}: connected from node {node_id} in {res['latency']} ms", style="green"))
    else:
        ctx.out.print(plain(f"{res['target']}: not connected from node {node_id}: {res['error']}", style="red"))
    return 0 if res["connected"] else 1


# -- logs and events ----------------------------------------------------------------------------------------

def log_line(line: dict[str, Any]) -> Text:
    level = terminal_safe(line["level"])
    text = plain(f"{fmt_time(line['time'], ms=True)} ")
    text.append(f"{level.upper():<8}", style=LEVEL_STYLE.get(level, ""))
    text.append(f" {terminal_safe(line['source']):<8} ")
    text.append(terminal_safe(line["message"]), style=LEVEL_STYLE.get(level, "") if level != "info" else "")
    return text


def parse_since(value: str | None) -> str | None:
    """'10m', '2h', '1d' ago as unix seconds; anything else (ISO 8601, unix seconds) goes to the API as is."""
    m = re.fullmatch(r"(\d+)([smhd])", value or "")
    if not m:
        return value
    seconds = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    return f"{time.time() - seconds:.3f}"


def follow(ctx: Ctx, path: str, params: Callable[[], dict[str, Any]],
           on_data: Callable[[dict[str, Any]], None]) -> int:
    """Print a live stream until a shutdown event or Ctrl-C; reconnect (with backoff) when the network fails."""
    delay, connected = 1.0, False
    try:
        while True:
            try:
                for _, data in ctx.api.stream(path, params()):
                    connected, delay = True, 1.0
                    if data.get("dropped"):
                        ctx.err.print(f"({data['dropped']} events dropped: this reader was too slow)", style="dim")
                    if data.get("type") == "shutdown":
                        ctx.err.print(plain(f"stream ended: {data.get('reason') or 'the controller is shutting down'}"))
                        return 0
                    on_data(data)
                problem = "the controller closed the stream"
            except ApiError as exc:
                if not (exc.network and connected):
                    raise
                problem = str(exc)
            ctx.err.print(plain(f"{problem}; reconnecting in {delay:g}s", style="yellow"))
            time.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)
    except KeyboardInterrupt:
        return 0


def cmd_logs(ctx: Ctx, args: argparse.Namespace) -> int:
    node_id = resolve_node(ctx.api, args.node)
    path = f"/api/v1/nodes/{node_id}/logs"
    query = {"level": args.level, "search": args.search, "since": parse_since(args.since), "limit": args.limit}
    if not args.follow:
        res = ctx.api.request("GET", path, params=query)
        if ctx.as_json:
            ctx.emit_json(res)
            return 0
        for line in res["lines"]:
            ctx.out.print(log_line(line), soft_wrap=True)
        if res.get("dropped_by_agent"):
            ctx.err.print(f"({res['dropped_by_agent']} lines were dropped: the agent's buffer overflowed or the node "
                          "sent more than the controller accepts per second)", style="dim")
        return 0
    last: dict[str, str] = {}

    def params() -> dict[str, Any]:  # after a reconnect, continue after the last line printed
        return {**query, "follow": True, **({"since": last["time"]} if last else {})}

    def on_data(data: dict[str, Any]) -> None:
        line = data.get("log")
        if not line:
            return
        last["time"] = line["time"]
        if ctx.as_json:
            print(json.dumps(line), flush=True)
        else:
            ctx.out.print(log_line(line), soft_wrap=True)

    return follow(ctx, path, params, on_data)


def event_line(data: dict[str, Any]) -> Text:
    kind = data.get("type", "?")
    text = plain(f"{fmt_time(data.get('time'))} {kind:<8} ", style="bold" if kind != "log" else "")
    if kind == "initial":
        text.append(f"{len(data.get('nodes', []))} nodes")
    elif "node" in data:
        n = data["node"]
        a = n["agent"]
        text.append(terminal_safe(f"{n['id']} {n['name']} "))
        text.append_text(status_text(n["status"]))
        text.append(terminal_safe(f" agent={a['connectivity']} rev={a['applied_revision']}/{a['desired_revision']}"
                                  f"{' ip=' + n['public_ip'] if n.get('public_ip') else ''}"))
    elif "log" in data:
        line = data["log"]
        text.append(terminal_safe(f"{line['node_id']} "))
        text.append_text(log_line(line))
    return text


def cmd_events(ctx: Ctx, args: argparse.Namespace) -> int:
    query = {"node_id": resolve_node(ctx.api, args.node) if args.node else None, "logs": True if args.logs else None}

    def on_data(data: dict[str, Any]) -> None:
        if ctx.as_json:
            print(json.dumps(data), flush=True)
        else:
            ctx.out.print(event_line(data), soft_wrap=True)

    return follow(ctx, "/api/v1/events", lambda: query, on_data)


# -- other commands -----------------------------------------------------------------------------------------

def cmd_regions(ctx: Ctx, args: argparse.Namespace) -> int:
    regions = ctx.api.request("GET", "/api/v1/regions")
    if ctx.as_json:
        ctx.emit_json(regions)
        return 0
    t = table("REGION", "NAME", "PROVIDER")
    for r in regions:
        t.add_row(plain(r["region"]), plain(r["name"]), plain(r["provider"]))
    ctx.show(t)
    return 0


def cmd_ops(ctx: Ctx, args: argparse.Namespace) -> int:
    res = ctx.api.request("GET", "/api/v1/operations", params={"target_id": args.target, "size": args.limit})
    if ctx.as_json:
        ctx.emit_json(res)
        return 0
    t = table("TIME", "ACTOR", "ACTION", "TARGET", "STATUS", "ERROR")
    for op in res["items"]:
        ok = op["result"] == "success"
        t.add_row(fmt_time(op["created_at"]), plain(op["actor"]), plain(op["action"]), plain(op["target_id"] or "-"),
                  plain(op["status_code"], style="green" if ok else "red"), plain(op["error"] or ""))
    ctx.show(t if res["items"] else "no operations")
    return 0


# -- clients (V2Ray subscribers) ----------------------------------------------------------------------------

def resolve_client(api: ApiClient, ref: str) -> str:
    """A client id from an id or an exact username."""
    try:
        return str(uuid.UUID(ref))
    except ValueError:
        pass
    found = [c for c in api.request("GET", "/api/v1/clients", params={"search": ref, "size": 500})["items"]
             if c["username"] == ref]
    if not found:
        raise ApiError(f"no client named '{ref}'")
    return found[0]["id"]


def show_client(ctx: Ctx, c: dict[str, Any]) -> None:
    if ctx.as_json:
        ctx.emit_json(c)
        return
    limit = fmt_bytes(c["data_limit_bytes"]) if c["data_limit_bytes"] else "unlimited"
    ctx.show(key_values([
        ("ID", c["id"]), ("Username", plain(c["username"])), ("Status", status_text(c["status"])),
        ("Expires", fmt_time(c["expires_at"])), ("Used", f"{fmt_bytes(c['used_bytes'])} of {limit}"),
        ("Nodes", ", ".join(c["node_ids"] or []) or ", ".join(c["regions"] or []) or "all"),
        ("Subscription", c["subscription_url"]), ("Note", plain(c["note"] or "")),
    ]))


def cmd_clients_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    res = ctx.api.request("GET", "/api/v1/clients", params={
        "status": args.status, "search": args.search, "page": args.page, "size": args.size})
    if ctx.as_json:
        ctx.emit_json(res)
        return 0
    t = table("ID", "USERNAME", "STATUS", "EXPIRES", "USED", "LIMIT")
    for c in res["items"]:
        t.add_row(plain(c["id"]), plain(c["username"]), status_text(c["status"]), fmt_time(c["expires_at"]),
                  fmt_bytes(c["used_bytes"]), fmt_bytes(c["data_limit_bytes"]) if c["data_limit_bytes"] else "-")
    ctx.show(t if res["items"] else "no clients")
    return 0


def cmd_clients_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body = {"username": args.username, "days": args.days, "data_limit_gb": args.limit_gb, "regions": args.region,
            "node_ids": args.node, "note": args.note}
    show_client(ctx, ctx.api.request("POST", "/api/v1/clients", body={k: v for k, v in body.items() if v}))
    return 0


def cmd_clients_show(ctx: Ctx, args: argparse.Namespace) -> int:
    show_client(ctx, ctx.api.request("GET", f"/api/v1/clients/{resolve_client(ctx.api, args.client)}"))
    return 0


def client_action(action: str) -> Callable[[Ctx, argparse.Namespace], int]:
    def run(ctx: Ctx, args: argparse.Namespace) -> int:
        body = {"days": args.days} if action == "extend" else None
        path = f"/api/v1/clients/{resolve_client(ctx.api, args.client)}/{action}"
        show_client(ctx, ctx.api.request("POST", path, body=body))
        return 0
    return run


def cmd_clients_config(ctx: Ctx, args: argparse.Namespace) -> int:
    client_id = resolve_client(ctx.api, args.client)
    cfg = (ctx.api.request("POST", f"/api/v1/clients/{client_id}/config/rotate") if args.rotate
           else ctx.api.request("GET", f"/api/v1/clients/{client_id}/config"))
    if ctx.as_json:
        ctx.emit_json(cfg)
    else:
        ctx.out.print(plain(cfg["subscription_url"]))
    return 0


def cmd_clients_usage(ctx: Ctx, args: argparse.Namespace) -> int:
    usage = ctx.api.request("GET", f"/api/v1/clients/{resolve_client(ctx.api, args.client)}/usage",
                            params={"days": args.days})
    if ctx.as_json:
        ctx.emit_json(usage)
        return 0
    t = table("NODE", "DAY", "UPLOAD", "DOWNLOAD")
    for n in usage["nodes"]:
        for d in n["days"]:
            t.add_row(plain(n["node_name"] or n["node_id"]), plain(d["date"]), fmt_bytes(d["upload_bytes"]),
                      fmt_bytes(d["download_bytes"]))
    ctx.show(t if usage["nodes"] else "no usage in this period")
    used = usage["used"]
    ctx.out.print(f"counted against the limit: {fmt_bytes(used['total_bytes'])}", style="dim")
    return 0


def cmd_clients_rm(ctx: Ctx, args: argparse.Namespace) -> int:
    client_id = resolve_client(ctx.api, args.client)
    ctx.api.request("DELETE", f"/api/v1/clients/{client_id}")
    ctx.progress(f"client {client_id} deleted")
    return 0


def cmd_version(ctx: Ctx, args: argparse.Namespace) -> int:
    health = ctx.api.request("GET", "/api/v1/health")
    if ctx.as_json:
        ctx.emit_json({"cli_version": __version__, "controller": health})
        return 0
    ctx.out.print(plain(f"vpnfleet CLI {__version__}"))
    ctx.out.print(plain(f"controller {health['version']} at {ctx.api.url} "
                        f"(database {health['database']}, {health['agents_connected']} agents connected)"))
    return 0


# -- signing in ---------------------------------------------------------------------------------------------

def read_secret(prompt: str, from_stdin: bool) -> str:
    """A password or code: a line of stdin with --password-stdin, else typed at the terminal (not echoed)."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ApiError(f"{prompt.rstrip(': ').lower()}: nothing on stdin")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ApiError("no terminal to ask for the password: pass it on stdin with --password-stdin")
    return getpass.getpass(prompt)


def cmd_login(ctx: Ctx, args: argparse.Namespace) -> int:
    """Sign in with a password (and a second factor when the account has one); cache the session 0600."""
    username = args.username
    if not username:
        if not sys.stdin.isatty() or args.password_stdin:
            raise ApiError("give --username (there is no terminal to ask for it)")
        username = input("Username: ").strip()
    password = read_secret("Password: ", args.password_stdin)
    res = ctx.api.request("POST", "/api/v1/auth/login", auth=False,
                          body={"username": username, "password": password, "remember_me": args.remember_me})
    if res.get("two_factor_setup_required"):
        raise ApiError("this account must enrol two-factor authentication before it signs in: do so in a "
                       "browser or with the API (POST /api/v1/auth/2fa/setup with the setup token)")
    if res.get("two_factor_required"):
        # from stdin: the next line (so a script can pipe "password\ncode\n"); else the terminal
        code = read_secret("Two-factor code (or a recovery code): ", args.password_stdin).strip()
        method = "totp" if code.isdigit() and len(code) <= 8 else "recovery"
        res = ctx.api.request("POST", "/api/v1/auth/verify-2fa", auth=False, body={"code": code, "method": method},
                              headers={"Authorization": f"Bearer {res['mfa_token']}"})
    session = Session.from_tokens(ctx.api.url, res, username)
    path = cli_session.save(session)
    if ctx.as_json:
        ctx.emit_json({"url": session.url, "username": session.username, "session_file": str(path),
                       "expires_at": session.expires_at})
    else:
        ctx.out.print(plain(f"signed in to {session.url} as {session.username} (session cached in {path})"))
        if (res.get("user") or {}).get("must_change_password"):
            ctx.out.print("your password was reset: choose a new one (PUT /api/v1/auth/password)",
                          style="yellow")
    return 0


def cmd_logout(ctx: Ctx, args: argparse.Namespace) -> int:
    """End the cached session on the controller (its refresh token too) and forget it here."""
    session = cli_session.load()
    if session is None:
        ctx.progress("not signed in")
        return 0
    try:
        if ctx.api.session is not None:
            ctx.api.request("POST", "/api/v1/auth/logout", body={})
    except ApiError as exc:
        if exc.network:
            raise
        ctx.err.print(plain(f"the controller did not end the session ({exc}); forgetting it anyway"))
    finally:
        cli_session.delete()
    ctx.progress(f"signed out of {session.url}")
    return 0


# -- API keys -------------------------------------------------------------------------------------------------

def show_key(ctx: Ctx, k: dict[str, Any]) -> None:
    if ctx.as_json:
        ctx.emit_json(k)
        return
    rate = k.get("rate_limit")
    ctx.show(key_values([
        ("ID", k["id"]), ("Name", plain(k["name"])), ("Prefix", k["prefix"]), ("Account", plain(k["username"] or "-")),
        ("Status", status_text(k["status"]) if k["status"] != "active" else plain("active", style="green")),
        ("Access", k["access_level"]), ("Permissions", ", ".join(k["effective_permissions"]) or "none"),
        ("From", ", ".join(k["allowed_ips"] or []) or "anywhere"),
        ("Paths", ", ".join(k["allowed_endpoints"] or []) or "all"),
        ("Rate limit", f"{rate['requests_per_minute']}/min" + (f", burst {rate['burst_limit']}"
                                                              if rate.get("burst_limit") else "") if rate else None),
        ("Expires", fmt_time(k["expires_at"]) if k["expires_at"] else "never"),
        ("Last used", fmt_time(k["last_used"])), ("Description", plain(k["description"] or "")),
    ]))
    if k.get("api_key"):
        ctx.out.print()
        ctx.out.print(plain(k["api_key"]))
        ctx.err.print("(the key is shown only now: store it safely)", style="dim")


def cmd_keys_create(ctx: Ctx, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"name": args.name, "access_level": args.access_level, "permissions": args.permission,
                            "allowed_ips": args.allow_ip, "allowed_endpoints": args.endpoint,
                            "expires_at": args.expires_at, "account_id": args.account_id}
    if args.rate_limit:
        body["rate_limit"] = {"requests_per_minute": args.rate_limit, "burst_limit": args.burst}
    if args.description:
        body["description"] = args.description
    show_key(ctx, ctx.api.request("POST", "/api/v1/auth/api-keys", body={k: v for k, v in body.items()
                                                                          if v is not None}))
    return 0


def cmd_keys_ls(ctx: Ctx, args: argparse.Namespace) -> int:
    res = ctx.api.request("GET", "/api/v1/auth/api-keys", params={
        "account_id": args.account_id, "status": args.status, "page": args.page, "size": args.size})
    if ctx.as_json:
        ctx.emit_json(res)
        return 0
    t = table("ID", "NAME", "PREFIX", "ACCOUNT", "ACCESS", "STATUS", "EXPIRES", "LAST USED")
    for k in res["items"]:
        t.add_row(plain(k["id"]), plain(k["name"]), plain(k["prefix"] or "-"), plain(k["username"] or "-"),
                  plain(k["access_level"]), plain(k["status"], style="green" if k["status"] == "active" else "dim"),
                  fmt_time(k["expires_at"]) if k["expires_at"] else "never", fmt_time(k["last_used"]))
    ctx.show(t if res["items"] else "no API keys")
    return 0


def cmd_keys_revoke(ctx: Ctx, args: argparse.Namespace) -> int:
    ctx.api.request("DELETE", f"/api/v1/auth/api-keys/{args.id}")
    ctx.progress(f"API key {args.id} revoked")
    return 0


def cmd_keys_rotate(ctx: Ctx, args: argparse.Namespace) -> int:
    show_key(ctx, ctx.api.request("POST", f"/api/v1/auth/api-keys/{args.id}/rotate"))
    return 0


# -- argument parsing ---------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: the options work before or after the command without the later parser resetting them
    common.add_argument("--url", default=argparse.SUPPRESS,
                        help=f"controller URL ($VPNFLEET_URL, default {DEFAULT_URL})")
    common.add_argument("--api-key", default=argparse.SUPPRESS,
                        help="API key (prefer $VPNFLEET_API_KEY: other users can read command lines; "
                             "else $VPNFLEET_DATA_DIR/admin.key)")
    common.add_argument("--ca-cert", default=argparse.SUPPRESS, metavar="PEM",
                        help=f"CA that signs the controller's certificate (${CA_ENV}, default "
                             f"$VPNFLEET_DATA_DIR/pki/ca.crt when it exists, else the system's)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the API's JSON")

    parser = argparse.ArgumentParser(prog="vpnfleet", parents=[common], description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(group: argparse._SubParsersAction, name: str, func: Callable, text: str) -> argparse.ArgumentParser:
        p = group.add_parser(name, parents=[common], help=text, description=text)
        p.set_defaults(func=func)
        return p

    def waits(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--wait", action="store_true", help=f"wait until the node is {what}")
        p.add_argument("--timeout", type=float, default=WAIT_TIMEOUT, help="seconds to wait (default 300)")

    nodes = commands.add_parser("nodes", help="manage nodes").add_subparsers(dest="action", required=True,
                                                                             metavar="ACTION")
    p = command(nodes, "ls", cmd_nodes_ls, "list nodes, newest first")
    p.add_argument("--status", help="only nodes in this status")
    p.add_argument("--region", help="only nodes of this region")
    online = p.add_mutually_exclusive_group()
    online.add_argument("--online", dest="online", action="store_const", const=True, help="only connected agents")
    online.add_argument("--offline", dest="online", action="store_const", const=False, help="only disconnected")
    p.add_argument("--search", help="name, id, IP or instance id contains")
    p.add_argument("--all", action="store_true", help="include deleted nodes")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--size", type=int, default=50)
    p = command(nodes, "create", cmd_nodes_create, "create a node")
    p.add_argument("--region", required=True, help="region code (see `vpnfleet regions`)")
    p.add_argument("--name", help="node name (default REGION-IDPREFIX)")
    waits(p, "running")
    for name, func, text in [("show", cmd_nodes_show, "show a node, its agent and components"),
                             ("metrics", cmd_nodes_metrics, "a node's current machine metrics"),
                             ("info", cmd_nodes_info, "system information measured on the node now")]:
        command(nodes, name, func, text).add_argument("node", help="node id, unique id prefix or name")
    p = command(nodes, "rm", cmd_nodes_rm, "delete a node (terminates its machine)")
    p.add_argument("node")
    waits(p, "deleted")
    for action, target in (("start", "running"), ("stop", "stopped"), ("reboot", None)):
        p = command(nodes, action, node_action(action, target), f"{action} a node's machine")
        p.add_argument("node")
        if target:
            waits(p, target)
    p = command(nodes, "tcping", cmd_nodes_tcping, "open a TCP connection from the node (exit 1 if it fails)")
    p.add_argument("node")
    p.add_argument("target", metavar="HOST:PORT")

    clients = commands.add_parser("clients", help="manage V2Ray subscribers").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    p = command(clients, "ls", cmd_clients_ls, "list subscribers")
    p.add_argument("--status", help="active, blocked, expired or limited")
    p.add_argument("--search", help="username or note contains")
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--size", type=int, default=50)
    p = command(clients, "create", cmd_clients_create, "create a subscriber")
    p.add_argument("username")
    p.add_argument("--days", type=int, required=True, help="subscription length")
    p.add_argument("--limit-gb", type=float, help="data limit in GiB (default: none)")
    p.add_argument("--region", action="append", help="only nodes of this region (repeatable)")
    p.add_argument("--node", action="append", help="only this node id (repeatable)")
    p.add_argument("--note")
    for name, func, text in [("show", cmd_clients_show, "show a subscriber"),
                             ("rm", cmd_clients_rm, "delete a subscriber for good"),
                             ("block", client_action("block"), "cut a subscriber off on every node"),
                             ("unblock", client_action("unblock"), "undo a block"),
                             ("reset-usage", client_action("usage/reset"), "count towards the limit from zero")]:
        command(clients, name, func, text).add_argument("client", help="client id or username")
    p = command(clients, "extend", client_action("extend"), "add days to a subscription")
    p.add_argument("client")
    p.add_argument("days", type=int)
    p = command(clients, "config", cmd_clients_config, "print the subscription URL")
    p.add_argument("client")
    p.add_argument("--rotate", action="store_true", help="new credentials and URL; the old ones stop working")
    p = command(clients, "usage", cmd_clients_usage, "transfer per node per day")
    p.add_argument("client")
    p.add_argument("--days", type=int, default=30)

    p = command(commands, "logs", cmd_logs, "a node's recent log lines, or follow them live")
    p.add_argument("node")
    p.add_argument("-f", "--follow", action="store_true", help="stream new lines (Ctrl-C to stop)")
    p.add_argument("--level", help="minimum level: debug, info, warning, error, critical")
    p.add_argument("--search", help="case-insensitive substring")
    p.add_argument("--since", help="ISO 8601 time, unix seconds, or an age like 10m, 2h, 1d")
    p.add_argument("-n", "--limit", type=int, help="at most this many recent lines (default 200)")
    p = command(commands, "events", cmd_events, "follow fleet events live (Ctrl-C to stop)")
    p.add_argument("--node", help="only this node's events")
    p.add_argument("--logs", action="store_true", help="include log lines")
    command(commands, "regions", cmd_regions, "regions nodes can be created in")
    p = command(commands, "ops", cmd_ops, "the operations (audit) log, newest first")
    p.add_argument("--target", help="only operations on this target id (e.g. a node id)")
    p.add_argument("-n", "--limit", type=int, default=20, help="number of entries (default 20)")
    command(commands, "version", cmd_version, "CLI and controller versions")

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True,
                                                                              metavar="ACTION")
    p = command(keys, "create", cmd_keys_create, "create an API key (printed once)")
    p.add_argument("--name", required=True, help="unique name")
    p.add_argument("--access-level", choices=("read", "write", "full"), default="read",
                   help="read (default): view permissions only")
    p.add_argument("--permission", action="append", metavar="P",
                   help="only this permission, e.g. nodes.view (repeatable; default: all the account's)")
    p.add_argument("--allow-ip", action="append", metavar="CIDR", help="only from this network (repeatable)")
    p.add_argument("--endpoint", action="append", metavar="GLOB",
                   help="only paths matching, e.g. '/api/v1/wireguard/*' (repeatable)")
    p.add_argument("--rate-limit", type=int, metavar="N", help="requests per minute")
    p.add_argument("--burst", type=int, metavar="N", help="requests at once (with --rate-limit)")
    p.add_argument("--expires-at", metavar="ISO", help="e.g. 2027-01-01T00:00:00Z")
    p.add_argument("--description")
    p.add_argument("--account-id", type=int, help="another account's key (needs keys.manage_all)")
    p = command(keys, "ls", cmd_keys_ls, "list API keys (yours; every account's with keys.manage_all)")
    p.add_argument("--account-id", type=int, help="only this account's")
    p.add_argument("--status", choices=("active", "revoked", "expired"))
    p.add_argument("--page", type=int, default=1)
    p.add_argument("--size", type=int, default=50)
    command(keys, "revoke", cmd_keys_revoke, "revoke an API key (refused from the next request)").add_argument(
        "id", type=int)
    command(keys, "rotate", cmd_keys_rotate, "a new secret for an API key (printed once; the old one stops)"
            ).add_argument("id", type=int)

    p = command(commands, "login", cmd_login, "sign in with a password; the session is cached (0600) for "
                                               "later commands")
    p.add_argument("--username", "-u")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password (and then a 2FA code, if asked) from stdin lines")
    p.add_argument("--remember-me", action="store_true", help="a long session")
    command(commands, "logout", cmd_logout, "end the cached session and forget it")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    session = cli_session.load()
    url = (getattr(args, "url", None) or os.environ.get("VPNFLEET_URL") or (session.url if session else None)
           or DEFAULT_URL).rstrip("/")
    if "://" not in url:
        url = "https://" + url
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 1000)
    err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 1000)
    try:
        verify = tls_verify(find_ca_cert(getattr(args, "ca_cert", None)))
    except ApiError as exc:
        err.print(plain(f"error: {exc}"))
        return 1
    key = given_api_key(getattr(args, "api_key", None))
    signing_in = args.func in (cmd_login, cmd_logout)
    if key is None and (session is None or session.url != url) and not signing_in:
        key = admin_key_file()
    api = ApiClient(url, None if signing_in else key, verify=verify, session=session)
    ctx = Ctx(api=api, out=out, err=err, as_json=getattr(args, "json", False))
    try:
        return args.func(ctx, args)
    except ApiError as exc:
        err.print(plain(f"error: {exc}"))
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `vpnfleet logs -f | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        api.close()


if __name__ == "__main__":
    sys.exit(main())
