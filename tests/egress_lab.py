"""What the egress tests run inside their network namespaces (each command prints one JSON line).

    python -m tests.egress_lab fetch URL [SOCKS_PORT] [TIMEOUT]
        GET URL (through the SOCKS5 proxy on 127.0.0.1:SOCKS_PORT when given): {"ok", "bytes"|"error"}
    python -m tests.egress_lab attack PORT TAG EMAIL UUID VICTIM
        what a subscriber would do with V2Ray's API if it reached it (through a tunnel: PORT is a client's
        dokodemo-door to the node's API port): QueryStats with reset, AlterInbound adding a hidden user EMAIL
        on inbound TAG, and removing the user VICTIM. {"query_stats"|"add_user"|"remove_user": "ok"|error}
    python -m tests.egress_lab open PORT
        does something listen on 127.0.0.1:PORT? {"ok"}
    python -m tests.egress_lab stats PORT
        QueryStats without reset (a harmless read, to show the API answers from the node itself)
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx


def fetch(url: str, socks_port: int = 0, timeout: float = 3.0) -> dict:
    proxy = f"socks5://127.0.0.1:{socks_port}" if socks_port else None
    try:
        with httpx.Client(proxy=proxy, timeout=timeout, trust_env=False) as client:
            response = client.get(url)
            response.raise_for_status()
            return {"ok": True, "bytes": len(response.content)}
    except (httpx.HTTPError, OSError) as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


async def attack(port: int, tag: str, email: str, uuid: str, victim: str) -> dict:
    from agent.v2ray.api import V2RayApi

    out = {}
    async with V2RayApi(port) as api:
        for name, call in (("query_stats", lambda: api.query_stats("user>>>", reset=True)),
                           ("add_user", lambda: api.add_user(tag, "vmess", email, uuid)),
                           ("remove_user", lambda: api.remove_user(tag, victim))):
            try:
                await asyncio.wait_for(call(), 5)
                out[name] = "ok"
            except Exception as exc:  # the point: any failure at all
                out[name] = f"{type(exc).__name__}: {exc}"[:300]
    return out


async def stats(port: int) -> dict:
    from agent.v2ray.api import V2RayApi

    async with V2RayApi(port) as api:
        return {"ok": True, "counters": len(await api.query_stats("", reset=False))}


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "fetch":
        result = fetch(argv[1], int(argv[2]) if len(argv) > 2 else 0, float(argv[3]) if len(argv) > 3 else 3.0)
    elif command == "attack":
        result = asyncio.run(attack(int(argv[1]), argv[2], argv[3], argv[4], argv[5]))
    elif command == "open":
        import socket

        try:
            socket.create_connection(("127.0.0.1", int(argv[1])), timeout=1).close()
            result = {"ok": True}
        except OSError as exc:
            result = {"ok": False, "error": str(exc)}
    elif command == "stats":
        result = asyncio.run(stats(int(argv[1])))
    else:
        raise SystemExit(f"unknown command {command}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
