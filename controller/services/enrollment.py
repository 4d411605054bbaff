"""Enrollment tokens: one-time, expiring secrets that let a fresh agent become its node."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import secrets

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from controller.models import EnrollmentToken, Node, utcnow
from controller.pki import CertificateAuthority, CsrError, fingerprint

log = logging.getLogger("vpnfleet.enrollment")


class EnrollmentRefused(Exception):
    """The token is unknown, used or expired, or the node is gone. Safe to tell the agent."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class EnrollmentService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], ca: CertificateAuthority, ttl: float) -> None:
        self._sessions = sessions
        self._ca = ca
        self._ttl = dt.timedelta(seconds=ttl)

    async def issue_token(self, session: AsyncSession, node_uuid: str) -> str:
        """A new token for the node (added to ``session``; the caller commits). Returns the plaintext."""
        token = secrets.token_urlsafe(32)
        session.add(EnrollmentToken(node_uuid=node_uuid, token_hash=hash_token(token),
                                    expires_at=utcnow() + self._ttl))
        return token

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
                cert_pem = self._ca.sign_agent_csr(csr_pem, node.uuid)
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
            node.cert_fingerprint = fingerprint(cert_pem)
            node.enrolled_at = now
            await s.commit()
        log.info("node %s enrolled from %s", node.uuid, peer)
        return node.uuid, cert_pem

    @staticmethod
    def _refuse(reason: str, peer: str) -> tuple[str, bytes]:
        log.warning("enrollment refused from %s: %s", peer, reason)
        raise EnrollmentRefused(reason)
