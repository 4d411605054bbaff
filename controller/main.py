"""``vpnfleet-controller``: one asyncio process serving the REST API (uvicorn) and the agent hub (gRPC)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

import uvicorn

from controller import __version__
from controller.app import create_app
from controller.auth import ADMIN_KEY_FILE
from controller.settings import SettingsError, load_settings, split_hostport


class _Server(uvicorn.Server):
    """uvicorn, plus: live SSE readers get a ``shutdown`` event the moment SIGTERM/SIGINT arrives."""

    def __init__(self, config: uvicorn.Config, app) -> None:  # noqa: ANN001
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame) -> None:  # noqa: ANN001
        self._app.state.ctl.announce_shutdown()
        # give the streams a moment to deliver it before uvicorn closes connections
        asyncio.get_event_loop().call_later(0.3, super().handle_exit, sig, frame)


def _banner(app, settings) -> None:  # noqa: ANN001
    ctl = app.state.ctl
    url = settings.http_url
    key_line = (f"  Admin key: {ctl.admin_key}\n             (shown once; also saved to "
                f"{settings.data_dir / ADMIN_KEY_FILE}, mode 0600)" if ctl.admin_key
                else f"  Admin key: in {settings.data_dir / ADMIN_KEY_FILE}")
    print(f"vpnfleet controller {__version__}\n"
          f"  API:       {url}/api/v1   (seed-000 API: {url}/api/v2ray)\n"
          f"  Docs:      {url}/docs   (OpenAPI: {url}/openapi.json)\n"
          f"  Agents:    gRPC mTLS {settings.advertised_grpc}, enrollment {settings.advertised_enroll}\n"
          f"  Database:  {settings.db_url.split('://')[0]}   data dir: {settings.data_dir}\n"
          f"{key_line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vpnfleet-controller", description=__doc__)
    parser.add_argument("--config", help="YAML settings file (default: $VPNFLEET_CONFIG)")
    parser.add_argument("--version", action="version", version=__version__)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(args.config)
    except SettingsError as exc:
        print(f"vpnfleet-controller: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), filename=settings.log_file or None,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "wheel"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    app = create_app(settings)
    host, port = split_hostport(settings.http_addr, default_port=8080)
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level, access_log=False,
                            timeout_graceful_shutdown=3, lifespan="on")
    server = _Server(config, app)

    async def serve() -> None:
        serving = asyncio.create_task(server.serve())
        while not server.started and not serving.done():
            await asyncio.sleep(0.05)
        if server.started:
            _banner(app, settings)
        await serving

    asyncio.run(serve())
    return 0 if server.started else 1


if __name__ == "__main__":
    sys.exit(main())
