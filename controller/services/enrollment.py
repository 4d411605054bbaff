"""Enrollment tokens: one-time, expiring secrets that let a fresh agent become its node."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.models import EnrollmentToken, Node, utcnow
from controller.pki import CertificateAuthority, CsrError, IssuedCertificate

log = logging.getLogger("vpnfleet.enrollment")


class EnrollmentRefused(Exception):
    """The token is unknown, used or expired, or the node is gone. Safe to tell the agent."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def certificate_columns(issued: IssuedCertificate, now: dt.datetime) -> dict[str, Any]:
    """The Node columns that make ``issued`` the node's current certificate (no other one is accepted then)."""
    return {"cert_fingerprint": issued.fingerprint, "cert_serial": issued.serial,
            "cert_not_after": issued.not_after, "cert_issued_at": now}


class EnrollmentService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority, ttl: float) -> None:
        self._sessions = sessions
        self._ca = ca
        self._ttl = dt.timedelta(seconds=ttl)
        #: called with the node uuid after a node that already had a certificate enrolled again (its old
        #: certificate is dead: the node-certificate service drops the stream it may still hold)
        self.on_reenrolled: Callable[[str], None] | None = None

    @property
    def ttl(self) -> dt.timedelta:
        return self._ttl

    async def issue_token(self, session: AsyncSession, node_uuid: str) -> str:
        """A new token for the node (added to ``session``; the caller commits). Returns the plaintext."""
        token = secrets.token_urlsafe(32)
        session.add(EnrollmentToken(node_uuid=node_uuid, token_hash=hash_token(token),
                                    expires_at=utcnow() + self._ttl))
        return token

    @staticmethod
    async def expire_tokens(session: AsyncSession, node_uuid: str) -> None:
        """Mark every unused token of the node used (in ``session``; the caller commits)."""
        await session.execute(update(EnrollmentToken)
                              .where(EnrollmentToken.node_uuid == node_uuid, EnrollmentToken.used_at.is_(None))
                              .values(used_at=utcnow()))

    async def token_is_valid(self, token: str) -> bool:
        """True for an unused, unexpired token of a live node (it authorises the agent package download)."""
        async with self._sessions() as s:
            row = await s.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == hash_token(token)))
        return row is not None and row.used_at is None and row.expires_at > utcnow()

    async def enroll(self, token: str, csr_pem: bytes, peer: str) -> tuple[str, bytes]:
        """Redeem a token: returns (node uuid, certificate PEM). All of the node's tokens die with it."""
        now = utcnow()
        async with self._sessions() as s:
            row = await s.scalar(select(EnrollmentToken).where(EnrollmentToken.token_hash == hash_token(token)))
            if row is None:
                return self._refuse("unknown enrollment token", peer)
            if row.used_at is not None:
                return self._refuse(f"enrollment token for node {row.node_uuid} was already used", peer)
            if row.expires_at <= now:
                return self._refuse(f"enrollment token for node {row.node_uuid} expired", peer)
            node = await s.scalar(select(Node).where(Node.uuid == row.node_uuid))
            if node is None or node.is_deleted or node.status in ("deleting", "deleted"):
                return self._refuse(f"node {row.node_uuid} is deleted", peer)
            try:
                issued = self._ca.issue_agent_certificate(csr_pem, node.uuid)
            except CsrError as exc:
                raise EnrollmentRefused(str(exc)) from exc
            # Mark every token of this node used, atomically with the check above (the row version
            # guards against two agents redeeming the same token at once).
            result = await s.execute(
                update(EnrollmentToken)
                .where(EnrollmentToken.node_uuid == node.uuid, EnrollmentToken.used_at.is_(None))
                .values(used_at=now)
            )
            if result.rowcount == 0:
                return self._refuse(f"enrollment token for node {node.uuid} was already used", peer)
            reenrolled = node.cert_fingerprint is not None
            for column, value in certificate_columns(issued, now).items():
                setattr(node, column, value)
            node.cert_previous_fingerprint = None
            node.enrolled_at = now
            node.cert_revoked_at = None  # a new identity: re-enrollment is how a revoked node comes back
            await s.commit()
        log.info("node %s %s from %s (certificate serial %s, valid until %s)", node.uuid,
                 "re-enrolled" if reenrolled else "enrolled", peer, issued.serial, issued.not_after.isoformat())
        if reenrolled and self.on_reenrolled is not None:
            self.on_reenrolled(node.uuid)
        return node.uuid, issued.cert_pem

    @staticmethod
    def _refuse(reason: str, peer: str) -> tuple[str, bytes]:
        log.warning("enrollment refused from %s: %s", peer, reason)
        raise EnrollmentRefused(reason)
