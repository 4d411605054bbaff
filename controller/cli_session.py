"""The CLI's cached sign-in: ``$XDG_CONFIG_HOME/vpnfleet/session.json`` (default ``~/.config``).

It holds a refresh token, which is as good as the password until it is used or the session ends, so the
directory is 0700 and the file 0600 from the moment it exists: it is written to a temporary file made 0600 in
the same directory and renamed over the old one (a crash leaves the old file or the new one, never half of
either; a reader never sees it world-readable).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "session.json"
#: refresh a little before the access token expires, so a request never leaves with a dying token
EXPIRY_MARGIN = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class Session:
    url: str
    access_token: str
    refresh_token: str
    #: when the access token expires (ISO 8601, UTC)
    expires_at: str
    username: str = ""

    def expired(self, now: dt.datetime | None = None) -> bool:
        try:
            at = dt.datetime.fromisoformat(self.expires_at)
        except ValueError:
            return True
        return (now or dt.datetime.now(dt.timezone.utc)) >= at - EXPIRY_MARGIN

    @classmethod
    def from_tokens(cls, url: str, tokens: dict, username: str = "") -> "Session":
        """From the API's TokensOut (login, verify-2fa, refresh)."""
        at = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=int(tokens["expires_in"]))
        return cls(url, tokens["access_token"], tokens["refresh_token"], at.isoformat(),
                   username or (tokens.get("user") or {}).get("username", ""))


def session_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "vpnfleet" / FILE_NAME


def load(path: Path | None = None) -> Session | None:
    """The cached session, or None (none, unreadable, or not ours)."""
    path = path or session_path()
    try:
        data = json.loads(path.read_text())
        return Session(**{k: data[k] for k in ("url", "access_token", "refresh_token", "expires_at")},
                       username=data.get("username", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(session: Session, path: Path | None = None) -> Path:
    path = path or session_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)  # an existing directory too: it holds a credential
    fd, tmp = tempfile.mkstemp(prefix=".session-", dir=path.parent)  # mkstemp makes it 0600
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(session), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def delete(path: Path | None = None) -> bool:
    """Forget the cached session; True when there was one."""
    path = path or session_path()
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
