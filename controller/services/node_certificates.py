"""A node's certificate after enrollment: which one is current, renewal, revocation and re-enrollment.

The rule: Agent.Connect accepts only the node's CURRENT certificate (``Node.cert_fingerprint``) and only while
the node is not revoked. Issuing a new certificate (Renew, or Enroll with a re-enrollment token) makes the old
one worthless at that commit. Two softenings, both safe:

* Renew also accepts the certificate the last Renew replaced (``cert_previous_fingerprint``) until the new one
  has connected: an agent whose Renew answer was lost in transit asks again instead of being locked out. That
  old certificate can never open a stream.
* Nodes enrolled before serials were recorded have a fingerprint but no serial: their certificate keeps
  working, and its serial and expiry are recorded at its first Connect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid

from cryptography import x509
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.errors import Conflict, NotFound
from controller.hub.hub import Hub
from controller.models import Node, utcnow
from controller.pki import CertificateAuthority, fingerprint, serial_hex
from controller.services.enrollment import EnrollmentService, certificate_columns

log = logging.getLogger("vpnfleet.certificates")


class CertificateRefused(Exception):
    """The presented certificate is not (or no longer) the node's current one. Safe to tell the agent."""


@dataclasses.dataclass(frozen=True)
class CertificateStatus:
    """What the controller knows of a node's current certificate."""

    node_id: str
    enrolled: bool
    serial: str | None
    not_after: dt.datetime | None
    issued_at: dt.datetime | None
    enrolled_at: dt.datetime | None
    revoked_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class ReenrollmentToken:
    """A one-time token that lets an agent enroll again as the same node (the plaintext is shown only once)."""

    node_id: str
    token: str
    expires_at: dt.datetime


def _status(node: Node) -> CertificateStatus:
    return CertificateStatus(node_id=node.uuid, enrolled=node.cert_fingerprint is not None, serial=node.cert_serial,
                             not_after=node.cert_not_after, issued_at=node.cert_issued_at,
                             enrolled_at=node.enrolled_at, revoked_at=node.cert_revoked_at)


def _gone(node: Node | None) -> bool:
    return node is None or node.is_deleted or node.status in ("deleting", "deleted")


class NodeCertificateService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority,
                 enrollment: EnrollmentService, hub: Hub) -> None:
        self._sessions = sessions
        self._ca = ca
        self._enrollment = enrollment
        self._hub = hub
        # Enrollment with a re-enrollment token replaces the certificate: the stream the old one holds goes.
        enrollment.on_reenrolled = self._drop_replaced_stream

    # -- the agent's side (hub/servicer.py) ------------------------------------------------------------------
    async def admit(self, node_uuid: str, cert_pem: bytes, peer: str) -> Node:
        """The node a Connect may open a stream for, or CertificateRefused. ``node_uuid`` is the CN."""
        presented = fingerprint(cert_pem)
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_uuid))
            if _gone(node):
                log.warning("refused stream from deleted or unknown node %s (%s)", node_uuid, peer)
                raise CertificateRefused("node is deleted or unknown")
            if node.cert_revoked_at is not None:
                log.warning("refused stream from node %s (%s): its certificate was revoked", node_uuid, peer)
                raise CertificateRefused("certificate revoked; the node must be re-enrolled")
            if node.cert_fingerprint != presented:
                log.warning("refused stream from node %s (%s): certificate is not the one issued", node_uuid, peer)
                raise CertificateRefused("certificate revoked or replaced")
            if node.cert_serial is None or node.cert_previous_fingerprint is not None:
                # an old node's certificate gets its record; a renewed one has proven the agent stored it
                cert = x509.load_pem_x509_certificate(cert_pem)
                node.cert_serial = node.cert_serial or serial_hex(cert)
                node.cert_not_after = node.cert_not_after or cert.not_valid_after_utc
                node.cert_previous_fingerprint = None
                await s.commit()
            return node

    async def renew(self, node_uuid: str, cert_pem: bytes, csr_pem: bytes, peer: str) -> bytes:
        """Issue the node a new certificate for the CSR's key. Raises CertificateRefused, pki.CsrError."""
        presented = fingerprint(cert_pem)
        async with self._sessions() as s:
            node = await s.scalar(select(Node).where(Node.uuid == node_uuid))
            if _gone(node):
                raise self._refuse(node_uuid, peer, "node is deleted or unknown")
            if node.cert_revoked_at is not None:
                raise self._refuse(node_uuid, peer, "certificate revoked; the node must be re-enrolled")
            current = node.cert_fingerprint
            if presented == current:
                previous = current
            elif presented == node.cert_previous_fingerprint and current is not None:
                previous = presented  # a retry: the certificate issued last time never reached the agent
            else:
                raise self._refuse(node_uuid, peer, "certificate revoked or replaced")
            issued = self._ca.issue_agent_certificate(csr_pem, node.uuid)
            now = utcnow()
            # Conditional on the certificate we checked: of two racing renewals only one wins.
            result = await s.execute(
                update(Node).where(Node.id == node.id, Node.cert_fingerprint == current,
                                   Node.cert_revoked_at.is_(None))
                .values(**certificate_columns(issued, now), cert_previous_fingerprint=previous))
            if result.rowcount != 1:
                raise self._refuse(node_uuid, peer, "the node's certificate changed meanwhile")
            await s.commit()
        log.info("node %s renewed its certificate from %s (serial %s, valid until %s)", node_uuid, peer,
                 issued.serial, issued.not_after.isoformat())
        return issued.cert_pem

    # -- the operator's side (routes/node_certificates.py) -----------------------------------------------
    async def status(self, node_id: str) -> CertificateStatus:
        async with self._sessions() as s:
            return _status(await self._node(s, node_id))

    async def revoke(self, node_id: str) -> CertificateStatus:
        """Refuse every certificate of the node from now on and cut its live stream at once.

        Its unused enrollment tokens die too: only a re-enrollment brings the node back.
        """
        async with self._sessions() as s:
            node = await self._live_node(s, node_id)
            if node.cert_revoked_at is None:
                node.cert_revoked_at = utcnow()
            node.cert_previous_fingerprint = None
            await self._enrollment.expire_tokens(s, node.uuid)
            await s.commit()
            status = _status(node)
        # After the commit: a Connect admitted just before it is caught by Hub.open_session's re-check.
        self._hub.disconnect(node.uuid, "certificate revoked", refuse=True)
        log.warning("certificate of node %s revoked (serial %s)", node.uuid, status.serial)
        return status

    async def reenroll(self, node_id: str) -> ReenrollmentToken:
        """A new one-time enrollment token for the same node; older unused ones die.

        The current certificate keeps working until an agent enrolls with the token: then only the new
        certificate is accepted and the old stream is dropped.
        """
        async with self._sessions() as s:
            node = await self._live_node(s, node_id)
            await self._enrollment.expire_tokens(s, node.uuid)
            token = await self._enrollment.issue_token(s, node.uuid)
            await s.commit()
        log.info("re-enrollment token issued for node %s", node.uuid)
        return ReenrollmentToken(node_id=node.uuid, token=token, expires_at=utcnow() + self._enrollment.ttl)

    # -- helpers ------------------------------------------------------------------------------------------
    def _drop_replaced_stream(self, node_uuid: str) -> None:
        # not a refusal: the agent reconnects, and its stored identity decides (the re-enrolled one works)
        self._hub.disconnect(node_uuid, "node re-enrolled: its previous certificate was replaced")

    @staticmethod
    def _refuse(node_uuid: str, peer: str, reason: str) -> CertificateRefused:
        log.warning("refused certificate renewal for node %s from %s: %s", node_uuid, peer, reason)
        return CertificateRefused(reason)

    @staticmethod
    async def _node(s: AsyncSession, node_id: str) -> Node:
        try:
            key = str(uuid.UUID(node_id))
        except ValueError:
            raise NotFound(f"node not found: {node_id}") from None
        node = await s.scalar(select(Node).where(Node.uuid == key))
        if node is None:
            raise NotFound(f"node not found: {node_id}")
        return node

    async def _live_node(self, s: AsyncSession, node_id: str) -> Node:
        node = await self._node(s, node_id)
        if _gone(node):
            raise Conflict(f"node {node.uuid} is deleted")
        return node
