"""Network-namespace lab for the WireGuard driver tests (root only), and the processes it runs.

Everything lives in namespaces this module creates (`vpf-<tag>-<role>`), joined by veth pairs created
directly inside them: the host's links, addresses and routes are never touched. wireguard-go's UAPI socket
directory (/var/run/wireguard) is shared by all namespaces, so every interface gets a unique name.

    python -m tests.agent.netns agent STATE_DIR       the WireGuard driver (with a StateApplier, as in the
                                                      agent) behind a JSON-lines protocol on stdin/stdout
    python -m tests.agent.netns echo PORT             TCP echo server on all addresses
    python -m tests.agent.netns probe HOST PORT BYTES TIMEOUT
                                                      send BYTES through an echo server, read them back
    python -m tests.agent.netns hold-udp PORT         keep a UDP port busy
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WG_SOCKET_DIR = Path("/var/run/wireguard")


def missing_prerequisite() -> str | None:
    """Why the namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, TUN devices)"
    for tool in ("ip", "wireguard-go", "wg"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing"
    probe = f"vpf-probe-{secrets.token_hex(3)}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if done.returncode != 0:
        return f"cannot create network namespaces: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def run(argv: list[str], timeout: float = 15.0, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Lab:
    """Namespaces, links and processes of one test; cleanup() removes all of it (also after failures)."""

    def __init__(self, workdir: Path) -> None:
        self.tag = secrets.token_hex(3)
        self.workdir = workdir
        self.namespaces: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.interface_names: list[str] = []

    # -- building --------------------------------------------------------------------------------------

    def netns(self, role: str) -> str:
        name = f"vpf-{self.tag}-{role}"
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str, *args: str) -> str:
        return run(["ip", "-n", ns, *args]).stdout

    def ip_json(self, ns: str, *args: str) -> Any:
        return json.loads(run(["ip", "-n", ns, "-j", *args]).stdout or "[]")

    def veth(self, ns_a: str, name_a: str, addr_a: str, ns_b: str, name_b: str, addr_b: str) -> None:
        run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])
        for ns, name, addr in ((ns_a, name_a, addr_a), (ns_b, name_b, addr_b)):
            self.ip(ns, "addr", "add", addr, "dev", name)
            self.ip(ns, "link", "set", name, "up")

    def iface_name(self, prefix: str) -> str:
        """A WireGuard interface name unique on this machine (the UAPI socket directory is shared)."""
        name = f"{prefix}{self.tag}"
        self.interface_names.append(name)
        return name

    def exec(self, ns: str, argv: list[str], timeout: float = 20.0, check: bool = True):
        return run(["ip", "netns", "exec", ns, *argv], timeout=timeout, check=check)

    def spawn(self, ns: str, argv: list[str], **popen: Any) -> subprocess.Popen:
        popen.setdefault("stdin", subprocess.DEVNULL)
        popen.setdefault("cwd", REPO)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **popen)
        self.processes.append(proc)
        return proc

    def python(self, ns: str, *args: str, **popen: Any) -> subprocess.Popen:
        return self.spawn(ns, [sys.executable, "-m", "tests.agent.netns", *args], **popen)

    def probe(self, ns: str, host: str, port: int, size: int = 64, timeout: float = 3.0) -> dict:
        """Echo `size` bytes through host:port from namespace ns; {"ok": bool, "seconds"|"error": ...}."""
        done = self.exec(
            ns,
            [sys.executable, "-m", "tests.agent.netns", "probe", host, str(port), str(size), str(timeout)],
            timeout=timeout + 10,
            check=False,
        )
        try:
            return json.loads(done.stdout.strip().splitlines()[-1])
        except (IndexError, ValueError):
            return {"ok": False, "error": f"probe printed {done.stdout!r}, stderr {done.stderr[-300:]!r}"}

    def wireguard_go(self, ns: str, name: str) -> subprocess.Popen:
        """A client-side wireguard-go in ns (configured by the test with `wg`)."""
        log = open(self.workdir / f"{name}.log", "ab")
        proc = self.spawn(
            ns, ["wireguard-go", "-f", name], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_for(lambda: (WG_SOCKET_DIR / f"{name}.sock").exists() and uapi_answers(name), 10, f"{name} UAPI")
        return proc

    # -- cleanup ---------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.kill()
        for ns in self.namespaces:
            # Everything still running in the namespace: wireguard-go instances (detached on purpose), echo
            # servers, harnesses.
            done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
            for pid in done.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        for proc in self.processes:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 5
        for ns in self.namespaces:
            while subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.strip():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for name in self.interface_names:
            path = WG_SOCKET_DIR / f"{name}.sock"
            if path.exists() and not uapi_answers(name):
                path.unlink(missing_ok=True)


def uapi_answers(name: str) -> bool:
    from agent.wireguard import uapi

    return uapi.answers(name, timeout=1.0)


class AgentHarness:
    """The driver in its own process inside a namespace, as the agent would run it."""

    def __init__(self, lab: Lab, ns: str, state_dir: Path, env: dict[str, str] | None = None) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self._stderr = open(state_dir.parent / f"{state_dir.name}-harness.log", "ab")
        self.proc = lab.python(
            ns,
            "agent",
            str(state_dir),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
        )
        ready = self._read(20.0)
        self.startup_report = _report(ready.get("report"))

    def _read(self, timeout: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError(f"driver harness silent for {timeout}s; see {self._stderr.name}")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError(f"driver harness exited ({self.proc.poll()}); see {self._stderr.name}")
        return json.loads(line)

    def call(self, op: str, timeout: float = 25.0, **args: Any) -> dict:
        self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
        self.proc.stdin.flush()
        answer = self._read(timeout)
        if "exception" in answer:
            raise AssertionError(f"harness {op}: {answer['exception']}")
        return answer

    def apply(self, state) -> Any:
        return _report(self.call("apply", state=base64.b64encode(state.SerializeToString()).decode())["report"])

    def traffic(self) -> list[dict]:
        return self.call("traffic")["peers"]

    def logs(self) -> list[dict]:
        return self.call("logs")["lines"]

    def records(self) -> dict:
        return self.call("records")["records"]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Like the agent being stopped: the process goes, the interfaces stay."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.stdin.close()  # ends the stdin reader thread, so asyncio.run can finish
            self.proc.wait(timeout=10)
        self._stderr.close()


def _report(encoded: str | None):
    from protos import agent_pb2

    if encoded is None:
        return None
    return agent_pb2.AppliedReport.FromString(base64.b64decode(encoded))


# -- the processes ---------------------------------------------------------------------------------------


async def _agent(state_dir: str) -> None:
    import logging

    from google.protobuf.json_format import MessageToDict

    from agent.drivers.wireguard import WireGuardComponent
    from agent.logbuffer import LogBuffer
    from agent.state import AppliedStateStore, StateApplier
    from protos import agent_pb2

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("agent").setLevel(logging.INFO)
    buffer = LogBuffer(100_000)
    component = WireGuardComponent(state_dir, log_push=buffer.push, supervise_seconds=0.2)
    applier = StateApplier([component], AppliedStateStore(state_dir))
    out = sys.stdout

    def answer(data: dict) -> None:
        out.write(json.dumps(data) + "\n")
        out.flush()

    def encode(report) -> str | None:
        return base64.b64encode(report.SerializeToString()).decode() if report is not None else None

    answer({"report": encode(await applier.load_and_apply())})
    loop = asyncio.get_running_loop()
    # SIGTERM as in agent.main: cancel and let asyncio.run wind everything down (the supervisor task too).
    loop.add_signal_handler(signal.SIGTERM, asyncio.current_task().cancel)
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        request = json.loads(line)
        op = request["op"]
        try:
            if op == "apply":
                state = agent_pb2.DesiredState.FromString(base64.b64decode(request["state"]))
                answer({"report": encode(await applier.apply(state))})
            elif op == "traffic":
                peers = await component.take_traffic()
                answer({"peers": [MessageToDict(p, preserving_proto_field_name=True) for p in peers]})
            elif op == "logs":
                batch = buffer.drain(100_000)
                lines = [MessageToDict(x, preserving_proto_field_name=True) for x in batch.lines] if batch else []
                answer({"lines": lines})
            elif op == "records":
                answer({"records": {name: vars(rec) for name, rec in component.records().items()}})
            elif op == "exit":
                answer({})
                break
            else:
                answer({"exception": f"unknown op {op}"})
        except Exception as exc:  # reported to the test, which fails with it
            answer({"exception": f"{type(exc).__name__}: {exc}"})
    await component.close()


async def _echo(port: int) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, None, port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _probe(host: str, port: int, size: int, timeout: float) -> dict:
    started = time.monotonic()

    async def exchange() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        payload = os.urandom(min(size, 1 << 16))

        async def send() -> None:
            left = size
            while left > 0:
                chunk = payload[: min(left, len(payload))]
                writer.write(chunk)
                await writer.drain()
                left -= len(chunk)

        sender = asyncio.create_task(send())
        received = 0
        while received < size:
            data = await reader.read(1 << 16)
            if not data:
                raise ConnectionError(f"closed after {received} bytes")
            received += len(data)
        await sender
        writer.close()

    try:
        await asyncio.wait_for(exchange(), timeout)
    except (OSError, TimeoutError, ConnectionError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "seconds": round(time.monotonic() - started, 3)}


def _hold_udp(port: int) -> None:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", port))
    print("ready", flush=True)
    time.sleep(3600)


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "agent":
        try:
            asyncio.run(_agent(argv[1]))
        except asyncio.CancelledError:
            pass
    elif command == "echo":
        asyncio.run(_echo(int(argv[1])))
    elif command == "probe":
        print(json.dumps(asyncio.run(_probe(argv[1], int(argv[2]), int(argv[3]), float(argv[4])))), flush=True)
    elif command == "hold-udp":
        _hold_udp(int(argv[1]))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
