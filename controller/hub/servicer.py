"""gRPC servicers: Enrollment (server TLS) and Agent.Connect / Agent.Renew (mutual TLS)."""

from __future__ import annotations

import asyncio
import logging

import grpc
from controller.hub.hub import Hub
from controller.pki import CsrError, fingerprint
from controller.services.enrollment import EnrollmentRefused, EnrollmentService
from controller.services.node_certificates import CertificateRefused, NodeCertificateService
from protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger("vpnfleet.hub")

HELLO_TIMEOUT = 10.0


class EnrollmentServicer(agent_pb2_grpc.EnrollmentServicer):
    def __init__(self, enrollment: EnrollmentService, ca_pem: bytes) -> None:
        self._enrollment = enrollment
        self._ca_pem = ca_pem

    async def Enroll(self, request: agent_pb2.EnrollRequest, context: grpc.aio.ServicerContext) -> agent_pb2.EnrollResponse:
        if not request.token or not request.csr_pem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "token and csr_pem are required")
        try:
            node_uuid, cert_pem = await self._enrollment.enroll(request.token, request.csr_pem, context.peer())
        except EnrollmentRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"enrollment refused: {exc}")
        return agent_pb2.EnrollResponse(node_id=node_uuid, certificate_pem=cert_pem,
                                        ca_chain_pem=self._ca_pem)


class AgentServicer(agent_pb2_grpc.AgentServicer):
    def __init__(self, hub: Hub, certificates: NodeCertificateService, ca_pem: bytes) -> None:
        self._hub = hub
        self._certificates = certificates
        self._ca_pem = ca_pem

    @staticmethod
    async def _peer_certificate(context: grpc.aio.ServicerContext) -> tuple[str, bytes]:
        """(common name, PEM) of the client certificate, which the TLS layer already verified against the CA."""
        auth = context.auth_context()
        cn = (auth.get("x509_common_name") or [b""])[0].decode()
        pem = (auth.get("x509_pem_cert") or [b""])[0]
        if not cn or not pem:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a client certificate is required")
        return cn, pem

    async def Renew(self, request: agent_pb2.RenewRequest, context: grpc.aio.ServicerContext) -> agent_pb2.RenewResponse:
        cn, pem = await self._peer_certificate(context)
        if not request.csr_pem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "csr_pem is required")
        try:
            cert_pem = await self._certificates.renew(cn, pem, request.csr_pem, context.peer())
        except CertificateRefused as exc:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"renewal refused: {exc}")
        except CsrError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"renewal refused: {exc}")
        return agent_pb2.RenewResponse(certificate_pem=cert_pem, ca_chain_pem=self._ca_pem)

    async def Connect(self, request_iterator, context: grpc.aio.ServicerContext) -> None:  # noqa: ANN001
        cn, pem = await self._peer_certificate(context)
        try:
            first = await asyncio.wait_for(context.read(), HELLO_TIMEOUT)
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "no hello within 10s")
        if first is grpc.aio.EOF or first.WhichOneof("kind") != "hello":
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first message must be hello")
        hello = first.hello
        if hello.node_id != cn:
            log.warning("refused stream: hello says node %s but certificate is %s", hello.node_id, cn)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "hello.node_id does not match the certificate")
        if self._hub.shutting_down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "controller is shutting down")

        async with self._hub.handshakes:  # a mass reconnect queues here instead of toppling the database
            try:
                node = await self._certificates.admit(cn, pem, context.peer())
            except CertificateRefused as exc:
                await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
            session = await self._hub.open_session(node, hello, cert_fingerprint=fingerprint(pem))

        reader = asyncio.create_task(self._read(context, session))
        try:
            while True:
                msg = await session.outbox.get()
                if msg is None or session.closed.is_set():
                    break
                await context.write(msg)
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        finally:
            reader.cancel()
            self._hub.close_session(session, session.close_reason or "stream closed")
        if session.refused:
            # revoked: end with a status the agent takes as final, not a plain end it reconnects after
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, session.close_reason)

    async def _read(self, context: grpc.aio.ServicerContext, session) -> None:  # noqa: ANN001
        try:
            while True:
                msg = await context.read()
                if msg is grpc.aio.EOF:
                    break
                await self._hub.handle(session, msg)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken stream: the agent reconnects
            log.debug("reading from %s failed: %s", session.node_uuid, exc)
        session.close("agent closed the stream")
