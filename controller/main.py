"""``vpnfleet-controller``: one asyncio process serving the REST API (uvicorn) and the agent hub (gRPC)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TextIO

import uvicorn
from starlette.applications import Starlette

from controller import __version__, rest_tls
from controller.app import create_app
from controller.pki import CaFilesError
from controller.auth import ADMIN_KEY_FILE, ADMIN_PASSWORD_FILE
from controller.http_server import MAX_HEAD_BYTES, bounded_protocol, loop_factory
from controller.private_files import (PrivateFileError, check_key_files, prepare_data_dir, restrict_umask,
                                      tighten_database)
from controller.settings import Settings, SettingsError, load_settings, split_hostport

#: exit status for a configuration the controller refuses to run with (as for bad settings)
CONFIG_ERROR = 2


class StartupRefused(RuntimeError):
    """The controller will not start as configured; the message says why and what to change."""


class _Server(uvicorn.Server):
    """uvicorn, plus: live SSE readers get a ``shutdown`` event the moment SIGTERM/SIGINT arrives."""

    def __init__(self, config: uvicorn.Config, app: Starlette) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame) -> None:  # noqa: ANN001
        self._app.state.ctl.announce_shutdown()
        # give the streams a moment to deliver it before uvicorn closes connections
        asyncio.get_event_loop().call_later(0.3, super().handle_exit, sig, frame)


def check_public_url(settings: Settings) -> None:
    """Nodes on real machines download their agent from the public URL and enroll with what it served: in
    clear, anyone on the path could swap or read it. Refuse unless the operator said so explicitly."""
    if settings.regions and not settings.http_url.startswith("https://") and not settings.allow_insecure_public_url:
        raise StartupRefused(
            f"EC2 regions are configured but the public URL {settings.http_url} is not https: enable server.tls, "
            f"or put a TLS proxy in front and set server.public_url to its https:// URL "
            f"(server.allow_insecure_public_url: true accepts plain http, not recommended)")


def key_files(settings: Settings) -> list[Path]:
    """Every private key the controller reads: none may be readable by another user."""
    pki = settings.data_dir / "pki"
    files = [pki / "ca.key", pki / "server.key", settings.data_dir / ADMIN_KEY_FILE,
             settings.data_dir / ADMIN_PASSWORD_FILE, settings.data_dir / "jwt" / "keys.json"]
    if settings.tls_enabled:
        files.append(rest_tls.key_file(settings))
    return files


def sqlite_file(settings: Settings) -> Path | None:
    url = settings.db_url
    if not url.startswith("sqlite") or ":///" not in url:
        return None
    path = url.split(":///", 1)[1].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


def prepare_files(settings: Settings) -> None:
    """umask 077, a private data dir and database, and key files nobody else can read (else StartupRefused)."""
    restrict_umask()
    prepare_data_dir(settings.data_dir)
    db = sqlite_file(settings)
    if db is not None:
        tighten_database(db)
    try:
        check_key_files(key_files(settings))
    except PrivateFileError as exc:
        raise StartupRefused(str(exc)) from None


def banner(app: Starlette, settings: Settings, tls: rest_tls.RestTls | None, out: TextIO = sys.stdout) -> None:
    """What an operator needs to reach the controller. The admin key and password are printed only on the
    first start and only to a terminal: stdout is often journald or `docker logs`, which keep them for anyone
    who can read them."""
    ctl = app.state.ctl
    first = ctl.first_start
    url = settings.http_url
    key_path = settings.data_dir / ADMIN_KEY_FILE
    password_path = settings.data_dir / ADMIN_PASSWORD_FILE
    if first.admin_key and out.isatty():
        key_line = (f"  Admin:     account 'admin', password {first.admin_password}\n"
                    f"  Admin key: {first.admin_key}\n"
                    f"             (shown once; also saved to {password_path} and {key_path}, mode 0600)")
    elif first.admin_key:
        key_line = (f"  Admin:     account 'admin', password in {password_path}\n"
                    f"  Admin key: new, in {key_path} (mode 0600; not printed: this output is not a terminal)")
    else:
        account = ("has no password yet: set one with `vpnfleet-controller create-admin`" if first.password_unset
                   else f"(its first password is in {password_path})")
        key_line = f"  Admin:     account 'admin' {account}\n  Admin key: in {key_path}"
    if tls is None:
        tls_line = "  TLS:       off (plain http: use a TLS proxy in front of it, see docs/tls.md)\n"
    else:
        trust = f"clients trust the CA {tls.ca_file}" if tls.ca_file else f"certificate {tls.cert_file}"
        tls_line = f"  TLS:       SHA-256 {tls.fingerprint}\n             ({trust})\n"
    print(f"vpnfleet controller {__version__}\n"
          f"  API:       {url}/api/v1   (seed-000 API: {url}/api/v2ray)\n"
          f"  Panel:     {url}/ui/   (sign in as admin)\n"
          f"  Docs:      {url}/docs   (OpenAPI: {url}/openapi.json)\n"
          f"{tls_line}"
          f"  Agents:    gRPC mTLS {settings.advertised_grpc}, enrollment {settings.advertised_enroll}\n"
          f"  Database:  {settings.db_url.split('://')[0]}   data dir: {settings.data_dir}\n"
          f"{key_line}", file=out, flush=True)


def uvicorn_config(app: Starlette, settings: Settings, tls: rest_tls.RestTls | None) -> uvicorn.Config:
    """uvicorn with every bound set: head and handshake timeouts, idle keep-alive, a connection cap, head size."""
    host, port = split_hostport(settings.http_addr, default_port=8080)
    return uvicorn.Config(
        app, host=host, port=port, log_level=settings.log_level, access_log=False,
        timeout_graceful_shutdown=3, lifespan="on",
        http=bounded_protocol(settings.header_timeout, settings.max_connections),  # type: ignore[arg-type]
        timeout_keep_alive=settings.idle_timeout,  # type: ignore[arg-type]  # a float works (call_later)
        limit_concurrency=settings.max_connections,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        ssl_certfile=tls.cert_file if tls else None, ssl_keyfile=tls.key_file if tls else None,
        server_header=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vpnfleet-controller", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (default: $VPNFLEET_CONFIG)")
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    admin = commands.add_parser("create-admin", help="create an admin account or set its password (asked twice "
                                                     "at a terminal, or read from stdin)")
    admin.add_argument("--username", default="admin")
    admin.add_argument("--password-stdin", action="store_true", help="read the password from one line of stdin")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
        if args.command != "create-admin":
            check_public_url(settings)
        prepare_files(settings)
    except (SettingsError, StartupRefused) as exc:
        print(f"vpnfleet-controller: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    if args.command == "create-admin":
        from controller.admin_account import create_admin  # only this command needs it
        return create_admin(settings, args.username, args.password_stdin)
    logging.basicConfig(level=settings.log_level.upper(), filename=settings.log_file or None,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "wheel"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        app = create_app(settings)
    except CaFilesError as exc:  # a CA half gone: never a new CA over the old key (docs/certificates.md)
        print(f"vpnfleet-controller: {exc}", file=sys.stderr)
        return CONFIG_ERROR
    tls = None
    if settings.tls_enabled:
        try:
            tls = rest_tls.prepare(settings, app.state.ctl.ca)
        except rest_tls.TlsSetupError as exc:
            print(f"vpnfleet-controller: {exc}", file=sys.stderr)
            return CONFIG_ERROR
    server = _Server(uvicorn_config(app, settings, tls), app)

    async def serve() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            banner(app, settings, tls)
        await serving

    with asyncio.Runner(loop_factory=loop_factory(settings.header_timeout)) as runner:
        runner.run(serve())
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
