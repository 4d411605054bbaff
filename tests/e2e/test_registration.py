"""Seed 002's self-registration, email verification and password resets, through a real SMTP server (aiosmtpd
on loopback); self-registration off by default; the outbox notifier of `make run`."""

from __future__ import annotations

import asyncio
import email
import os
import re
import threading
from email.message import Message
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from aiosmtpd.controller import Controller as SmtpController

from controller.notifier import OutboxNotifier
from tests.controller_process import ControllerProcess, free_port, wait_for

PASSWORD = "Gr8-registration-pw"


class Mailbox:
    """What a real SMTP server on 127.0.0.1 received."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[Message] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook
        with self._lock:
            self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"

    def to(self, address: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def code_for(self, address: str, count: int = 1, timeout: float = 15) -> str:
        """The code in the count-th message to address (waiting for it)."""
        wait_for(lambda: len(self.to(address)) >= count, timeout, message=f"message {count} to {address}")
        body = self.to(address)[count - 1].get_payload(decode=True).decode()
        return re.search(r"\b(\d{8})\b", body).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    server = SmtpController(box, hostname="127.0.0.1", port=box.port)
    server.start()
    try:
        yield box
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ctl(tmp_path_factory: pytest.TempPathFactory, mailbox: Mailbox) -> Iterator[ControllerProcess]:
    smtp_port = str(mailbox.port)
    c = ControllerProcess(tmp_path_factory.mktemp("register") / "data", env={
        "VPNFLEET_SELF_REGISTRATION": "1", "VPNFLEET_SMTP_HOST": "127.0.0.1", "VPNFLEET_SMTP_PORT": smtp_port,
        "VPNFLEET_SMTP_SECURITY": "none", "VPNFLEET_SMTP_SENDER": "fleet@example.test"})
    try:
        yield c.start()
    finally:
        c.cleanup()


def post(ctl: ControllerProcess, path: str, **kwargs: Any) -> httpx.Response:
    with ctl.http_client(timeout=30) as client:
        return client.post(path, **kwargs)


def register(ctl: ControllerProcess, username: str, address: str, password: str = PASSWORD) -> httpx.Response:
    return post(ctl, "/api/v1/auth/register", json={"username": username, "email": address, "password": password,
                                                    "full_name": "Test Person"})


def login(ctl: ControllerProcess, username: str, password: str = PASSWORD) -> httpx.Response:
    return post(ctl, "/api/v1/auth/login", json={"username": username, "password": password})


def test_self_registration_is_off_by_default(shared_controller: ControllerProcess) -> None:
    r = register(shared_controller, "mallory", "mallory@example.test")
    assert r.status_code == 403 and "auth.self_registration" in r.json()["error"]["message"]


def test_register_verify_and_sign_in(ctl: ControllerProcess, mailbox: Mailbox) -> None:
    r = register(ctl, "grace", "Grace@Example.test")
    assert r.status_code == 202, r.text
    assert r.json() == {"status": "verification_sent", "email": "grace@example.test", "expires_in": 900}
    code = mailbox.code_for("grace@example.test")
    assert mailbox.to("grace@example.test")[0]["From"] == "fleet@example.test"
    # not before the address is verified
    early = login(ctl, "grace")
    assert early.status_code == 403 and early.json()["error"]["details"]["status"] == "inactive"
    wrong = post(ctl, "/api/v1/auth/verify", json={"email": "grace@example.test", "code": "00000000"})
    assert wrong.status_code == 422 and "code" in wrong.json()["error"]["details"]
    ok = post(ctl, "/api/v1/auth/verify", json={"email": "grace@example.test", "code": code})
    assert ok.status_code == 200 and ok.json() == {"username": "grace", "status": "active"}
    again = post(ctl, "/api/v1/auth/verify", json={"email": "grace@example.test", "code": code})
    assert again.status_code == 422  # once
    signed = login(ctl, "grace")
    assert signed.status_code == 200, signed.text
    user = signed.json()["user"]
    assert user["role"] == "user" and user["email"] == "grace@example.test"
    # a user account reaches only its own things: not the fleet
    with ctl.http_client(timeout=30) as client:
        nodes = client.get("/api/v1/nodes", headers={"Authorization": f"Bearer {signed.json()['access_token']}"})
    assert nodes.status_code == 403
    # the code never reached the controller's log or the audit log
    assert code not in ctl.log()
    ops = ctl.api.get("/api/v1/operations", params={"action": "auth.", "size": 200}).json()["items"]
    assert code not in str(ops) and PASSWORD not in str(ops)
    assert {"auth.register", "auth.verify"} <= {o["action"] for o in ops}


def test_taken_names_and_addresses(ctl: ControllerProcess, mailbox: Mailbox) -> None:
    assert register(ctl, "heidi", "heidi@example.test").status_code == 202
    taken = register(ctl, "HEIDI", "other@example.test")
    assert taken.status_code == 409
    # a taken address gets the same answer as a free one; its owner is told by mail
    same = register(ctl, "heidi2", "heidi@example.test")
    assert same.status_code == 202 and same.json()["email"] == "heidi@example.test"
    wait_for(lambda: len(mailbox.to("heidi@example.test")) == 2, 15, message="notice")
    assert "already has one" in mailbox.to("heidi@example.test")[1].get_payload(decode=True).decode()
    assert login(ctl, "heidi2").status_code == 401  # nothing was made
    weak = register(ctl, "ivan", "ivan@example.test", password="weak")
    assert weak.status_code == 422 and "password" in weak.json()["error"]["details"]


def test_reset_password(ctl: ControllerProcess, mailbox: Mailbox) -> None:
    assert register(ctl, "judy", "judy@example.test").status_code == 202
    code = mailbox.code_for("judy@example.test")
    assert post(ctl, "/api/v1/auth/verify", json={"email": "judy@example.test", "code": code}).status_code == 200
    session = login(ctl, "judy").json()
    before = len(mailbox.messages)
    unknown = post(ctl, "/api/v1/auth/reset-password/request", json={"email": "nobody@example.test"})
    known = post(ctl, "/api/v1/auth/reset-password/request", json={"email": "judy@example.test"})
    assert unknown.status_code == known.status_code == 202 and unknown.json() == known.json()
    reset_code = mailbox.code_for("judy@example.test", count=2)
    assert len(mailbox.messages) == before + 1  # nothing went to the unknown address
    weak = post(ctl, "/api/v1/auth/reset-password", json={"email": "judy@example.test", "code": reset_code,
                                                          "new_password": "weak"})
    assert weak.status_code == 422 and "new_password" in weak.json()["error"]["details"]
    wrong = post(ctl, "/api/v1/auth/reset-password", json={"email": "judy@example.test", "code": "12345678",
                                                           "new_password": "A-brand-new-Passw0rd"})
    assert wrong.status_code == 422 and "code" in wrong.json()["error"]["details"]
    done = post(ctl, "/api/v1/auth/reset-password", json={"email": "judy@example.test", "code": reset_code,
                                                          "new_password": "A-brand-new-Passw0rd"})
    assert done.status_code == 204, done.text
    assert login(ctl, "judy").status_code == 401
    assert login(ctl, "judy", "A-brand-new-Passw0rd").status_code == 200
    with ctl.http_client(timeout=30) as client:  # the old sign-in ended
        r = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {session['access_token']}"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "TOKEN_INVALID"
    reused = post(ctl, "/api/v1/auth/reset-password", json={"email": "judy@example.test", "code": reset_code,
                                                            "new_password": "Yet-another-Passw0rd"})
    assert reused.status_code == 422


def test_five_wrong_tries_spend_a_code(ctl: ControllerProcess, mailbox: Mailbox) -> None:
    assert register(ctl, "kim", "kim@example.test").status_code == 202
    code = mailbox.code_for("kim@example.test")
    wrong = "99999999" if code != "99999999" else "88888888"
    for _ in range(5):
        assert post(ctl, "/api/v1/auth/verify", json={"email": "kim@example.test", "code": wrong}).status_code == 422
    assert post(ctl, "/api/v1/auth/verify", json={"email": "kim@example.test", "code": code}).status_code == 422


def test_outbox_files_are_private_and_the_log_says_only_where(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    outbox = OutboxNotifier(tmp_path / "outbox", sender="fleet@example.test")
    caplog.set_level("INFO", logger="vpnfleet.notifier")
    asyncio.run(outbox.send("lee@example.test", "your code", "the code is 12345678\n"))
    (path,) = list((tmp_path / "outbox").iterdir())
    assert oct(os.stat(path).st_mode & 0o777) == "0o600" and oct(os.stat(path.parent).st_mode & 0o777) == "0o700"
    message = email.message_from_bytes(path.read_bytes())
    assert message["To"] == "lee@example.test" and "12345678" in message.get_payload(decode=True).decode()
    assert f"message to lee@example.test written to {path}" in caplog.text and "12345678" not in caplog.text
