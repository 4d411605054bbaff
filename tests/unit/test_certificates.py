"""The node-certificate rules on a real SQLite file: only the current, unrevoked certificate is admitted."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import AsyncIterator

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography import x509
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update

from controller.db import make_engine, make_sessionmaker, prepare_database
from controller.errors import Conflict, NotFound
from controller.events import EventBus
from controller.hub.hub import Hub
from controller.models import EnrollmentToken, Node
from controller.pki import CertificateAuthority, CsrError, fingerprint
from controller.services.enrollment import EnrollmentRefused, EnrollmentService
from controller.services.logs import LogStore
from controller.services.node_certificates import CertificateRefused, NodeCertificateService
from controller.services.node_state import NodeStateWriter
from controller.services.telemetry import TelemetryIngest
from controller.settings import Settings
from protos import agent_pb2


def csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    request = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "agent")]))
               .sign(key, hashes.SHA256()))
    return request.public_bytes(serialization.Encoding.PEM)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
        self.sessions = make_sessionmaker(self.engine)
        bus = EventBus()
        self.hub = Hub(Settings(data_dir=tmp_path), self.sessions, NodeStateWriter(self.sessions, bus),
                       TelemetryIngest(self.sessions), LogStore(bus, 100))
        self.ca = CertificateAuthority(tmp_path / "pki", agent_validity=dt.timedelta(days=30))
        self.enrollment = EnrollmentService(self.sessions, self.ca, ttl=60)
        self.certs = NodeCertificateService(self.sessions, self.ca, self.enrollment, self.hub)

    async def node(self, uuid: str = "11111111-1111-1111-1111-111111111111") -> tuple[str, str]:
        """A node and its first enrollment token."""
        async with self.sessions() as s:
            s.add(Node(uuid=uuid, name="n", region="local", provider="local", status="running"))
            await s.flush()
            token = await self.enrollment.issue_token(s, uuid)
            await s.commit()
        return uuid, token

    async def row(self, uuid: str) -> Node:
        async with self.sessions() as s:
            return await s.scalar(select(Node).where(Node.uuid == uuid))

    async def stream(self, uuid: str, cert: bytes):  # noqa: ANN201
        node = await self.certs.admit(uuid, cert, "test")
        return await self.hub.open_session(node, agent_pb2.Hello(node_id=uuid), cert_fingerprint=fingerprint(cert))


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    await prepare_database(w.engine)
    yield w
    await w.engine.dispose()


async def test_enrollment_records_the_certificate_and_renewal_replaces_it(world: World) -> None:
    uuid, token = await world.node()
    _, first = await world.enrollment.enroll(token, csr(), "test")
    row = await world.row(uuid)
    cert = x509.load_pem_x509_certificate(first)
    assert row.cert_serial == format(cert.serial_number, "x") and row.cert_not_after == cert.not_valid_after_utc
    assert (await world.certs.admit(uuid, first, "test")).uuid == uuid

    second = await world.certs.renew(uuid, first, csr(), "test")
    assert (await world.row(uuid)).cert_fingerprint == fingerprint(second)
    with pytest.raises(CertificateRefused, match="revoked or replaced"):
        await world.certs.admit(uuid, first, "test")  # the old one stops working at once
    # an agent whose answer was lost asks again with the old one: allowed, until the new one connects
    third = await world.certs.renew(uuid, first, csr(), "test")
    with pytest.raises(CertificateRefused):
        await world.certs.admit(uuid, second, "test")  # the lost one never works
    await world.certs.admit(uuid, third, "test")
    with pytest.raises(CertificateRefused, match="revoked or replaced"):
        await world.certs.renew(uuid, first, csr(), "test")  # the new one has connected: the old one is dead
    with pytest.raises(CsrError):
        await world.certs.renew(uuid, third, b"not a csr", "test")
    assert (await world.row(uuid)).cert_fingerprint == fingerprint(third)  # a bad CSR changes nothing


async def test_a_certificate_from_before_serials_keeps_working_and_gets_recorded(world: World) -> None:
    uuid, token = await world.node()
    _, cert = await world.enrollment.enroll(token, csr(), "test")
    async with world.sessions() as s:  # what 0010 leaves for a node enrolled before it
        await s.execute(update(Node).values(cert_serial=None, cert_not_after=None, cert_issued_at=None))
        await s.commit()
    await world.certs.admit(uuid, cert, "test")
    row = await world.row(uuid)
    assert row.cert_serial == format(x509.load_pem_x509_certificate(cert).serial_number, "x")
    assert row.cert_not_after is not None


async def test_revoke_cuts_the_stream_and_refuses_every_certificate_until_reenrolled(world: World) -> None:
    uuid, token = await world.node()
    _, cert = await world.enrollment.enroll(token, csr(), "test")
    pending = await world.certs.reenroll(uuid)  # an unused token dies with the revocation too
    session = await world.stream(uuid, cert)

    status = await world.certs.revoke(uuid)
    assert status.revoked_at is not None
    assert session.closed.is_set() and session.refused and uuid not in world.hub.sessions
    with pytest.raises(CertificateRefused, match="revoked"):
        await world.certs.admit(uuid, cert, "test")
    with pytest.raises(CertificateRefused, match="revoked"):
        await world.certs.renew(uuid, cert, csr(), "test")
    with pytest.raises(EnrollmentRefused, match="already used"):
        await world.enrollment.enroll(pending.token, csr(), "test")
    assert (await world.certs.revoke(uuid)).revoked_at == status.revoked_at  # idempotent

    again = await world.certs.reenroll(uuid)
    _, fresh = await world.enrollment.enroll(again.token, csr(), "test")
    assert (await world.row(uuid)).cert_revoked_at is None
    await world.certs.admit(uuid, fresh, "test")


async def test_reenrollment_replaces_the_certificate_and_drops_the_old_stream(world: World) -> None:
    uuid, token = await world.node()
    _, old = await world.enrollment.enroll(token, csr(), "test")
    session = await world.stream(uuid, old)

    grant = await world.certs.reenroll(uuid)
    assert grant.node_id == uuid and grant.expires_at > dt.datetime.now(dt.timezone.utc)
    async with world.sessions() as s:  # stored hashed, like every token
        hashes_ = (await s.scalars(select(EnrollmentToken.token_hash))).all()
    assert grant.token not in hashes_
    await world.certs.admit(uuid, old, "test")  # still works until the token is used
    assert not session.closed.is_set()

    node_id, new = await world.enrollment.enroll(grant.token, csr(), "test")
    assert node_id == uuid
    assert session.closed.is_set() and not session.refused  # dropped; the agent reconnects with what it has
    with pytest.raises(CertificateRefused):
        await world.certs.admit(uuid, old, "test")
    await world.certs.admit(uuid, new, "test")
    with pytest.raises(EnrollmentRefused):
        await world.enrollment.enroll(grant.token, csr(), "test")  # single use


async def test_a_stream_admitted_just_before_a_revocation_is_ended(world: World) -> None:
    uuid, token = await world.node()
    _, cert = await world.enrollment.enroll(token, csr(), "test")
    node = await world.certs.admit(uuid, cert, "test")
    await world.certs.revoke(uuid)  # commits between the admission and the session's registration
    session = await world.hub.open_session(node, agent_pb2.Hello(node_id=uuid), cert_fingerprint=fingerprint(cert))
    assert session.closed.is_set() and session.refused


async def test_unknown_and_deleted_nodes(world: World) -> None:
    with pytest.raises(NotFound, match="^node not found: nope$"):
        await world.certs.revoke("nope")
    with pytest.raises(NotFound, match="^node not found: 22222222-2222-2222-2222-222222222222$"):
        await world.certs.reenroll("22222222-2222-2222-2222-222222222222")
    uuid, _ = await world.node()
    async with world.sessions() as s:
        await s.execute(update(Node).values(status="deleted", is_deleted=True))
        await s.commit()
    for call in (world.certs.revoke, world.certs.reenroll):
        with pytest.raises(Conflict, match="deleted"):
            await call(uuid.upper())  # ids are normalised
