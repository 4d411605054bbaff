"""uvicorn, bounded: a request head must arrive within ``header_timeout``, a TLS handshake too, idle keep-alive
connections close after ``idle_timeout``, and connections beyond ``max_connections`` are closed at once.

uvicorn 0.54 has the idle timeout (``timeout_keep_alive``) and a request cap (``limit_concurrency``: a 503) but no
header timeout: its keep-alive timer only starts after a response, so a client that connects and sends half a
request head (slowloris) holds its connection forever. ``HeadTimeoutH11Protocol`` adds that timer; the loop
class bounds the TLS handshake, which asyncio otherwise waits 60 s for.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("vpnfleet.http")

#: the largest request head (request line + headers) h11 buffers before refusing it with a 400
MAX_HEAD_BYTES = 16 * 1024


class HeadTimeoutH11Protocol(H11Protocol):
    """uvicorn's h11 protocol plus a deadline for each request head, and a hard connection cap.

    The deadline runs from the connection (after its TLS handshake) or, on a kept-alive connection, from the
    first byte of the next request, until h11 has the whole head; then the app and uvicorn's own timers take over.
    """

    header_timeout: float = 10.0
    max_connections: int = 1000

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        if len(self.connections) > self.max_connections:
            # refusing costs nothing; holding it would let a flood of idle sockets starve real clients
            log.warning("connection cap (%d) reached: closing a new connection from %s",
                        self.max_connections, self.client[0] if self.client else "?")
            transport.close()
            return
        self._arm_head_timer()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            self._cancel_head_timer()
        elif self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # part of a head: the deadline runs from its first byte (never extended)
        else:
            self._cancel_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        # between requests the keep-alive timer (idle_timeout) is uvicorn's
        self._cancel_head_timer()
        super().on_response_complete()

    def _arm_head_timer(self) -> None:
        if getattr(self, "_head_timer", None) is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            # dropped without an answer: a slow client is not worth a 408, and it must not cost a log line each
            self.transport.close()


def bounded_protocol(header_timeout: float, max_connections: int) -> type[HeadTimeoutH11Protocol]:
    """The protocol class uvicorn should use (its ``http=`` setting) with these bounds."""
    return type("BoundedH11Protocol", (HeadTimeoutH11Protocol,),
                {"header_timeout": header_timeout, "max_connections": max_connections})


#: the read buffer of each TLS connection: asyncio allocates 256 KiB per connection before its handshake (620
#: half-open connections: +180 MB); a TLS record is at most 16 KiB, so 32 KiB reads lose nothing
TLS_READ_BUFFER = 32 * 1024


class HandshakeBoundLoop(asyncio.SelectorEventLoop):
    """The event loop, with every TLS server's handshake bounded (asyncio's default is 60 s) and its per-
    connection buffer small."""

    handshake_timeout: float = 10.0

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:  # type: ignore[override]
        if kwargs.get("ssl") is not None:
            kwargs.setdefault("ssl_handshake_timeout", self.handshake_timeout)
            # a class attribute asyncio reads for every connection; only this process's REST server uses
            # asyncio's TLS (gRPC has its own, boto3 is synchronous)
            asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
        return await super().create_server(*args, **kwargs)


def loop_factory(handshake_timeout: float) -> type[HandshakeBoundLoop]:
    return type("BoundedLoop", (HandshakeBoundLoop,), {"handshake_timeout": handshake_timeout})
