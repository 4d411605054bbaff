"""`vpnfleet-agent` / `python -m agent`: read the config, set up logging, run the engine until signalled.

Exit codes: 0 stopped by SIGTERM/SIGINT, 2 configuration error, 3 permanent authentication failure
(enrollment refused, or the controller refuses the node's certificate: re-enroll the node).

`vpnfleet-agent --reenroll` enrolls once more with a token from `POST /api/v1/nodes/{id}/reenroll` and
replaces the stored identity, then exits (0 done, 1 controller unreachable, 2 no token/bad config, 3 token
refused). The token is read from --token-file (or "-" for stdin) or $VPNFLEET_ENROLLMENT_TOKEN, never from
the command line, which every local user can read in /proc. A running agent picks the new identity up when
the controller drops its old stream (at once); a stopped one at its next start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import grpc

import agent
from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError
from agent.engine import Engine
from agent.backoff import Backoff
from agent.identity import PermanentAuthError, enroll
from agent.logbuffer import LogBuffer
from agent.logcontrol import LogControl

log = logging.getLogger("agent.main")

EXIT_OK = 0
EXIT_UNREACHABLE = 1
EXIT_CONFIG = 2
EXIT_AUTH = 3

CONFIG_ENV = "VPNFLEET_AGENT_CONFIG"
TOKEN_ENV = "VPNFLEET_ENROLLMENT_TOKEN"
#: Enroll calls `--reenroll` makes before giving up on an unreachable controller.
REENROLL_ATTEMPTS = 5


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    # no abbreviations: "--token SECRET" must be an error, not "--token-file SECRET" (a secret on argv)
    parser = argparse.ArgumentParser(prog="vpnfleet-agent", description="vpnfleet node agent", allow_abbrev=False)
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"agent config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--version", action="version", version=f"vpnfleet-agent {agent.__version__}")
    parser.add_argument(
        "--reenroll", action="store_true",
        help=f"enroll again with a re-enrollment token (from --token-file or ${TOKEN_ENV}), replacing this "
             "node's key and certificate, then exit",
    )
    parser.add_argument("--token-file", help="file holding the re-enrollment token ('-': standard input)")
    return parser.parse_args(argv)


def read_token(token_file: str | None) -> str:
    """The re-enrollment token from the file (or stdin) or the environment; ConfigError if there is none."""
    if token_file == "-":
        token = sys.stdin.readline()
    elif token_file:
        try:
            token = Path(token_file).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read the token file {token_file}: {exc.strerror}") from exc
    else:
        token = os.environ.get(TOKEN_ENV, "")
    token = token.strip()
    if not token:
        raise ConfigError(f"--reenroll needs a token: --token-file FILE, --token-file - (stdin) or ${TOKEN_ENV}")
    return token


def reenroll(config: AgentConfig, token_file: str | None) -> int:
    """`--reenroll`: one enrollment with the token, replacing the stored identity."""
    logging.basicConfig(level=logging.INFO, format="vpnfleet-agent: %(message)s")
    try:
        token = read_token(token_file)
        identity = asyncio.run(enroll(config, token, Backoff(cap=5.0), attempts=REENROLL_ATTEMPTS))
    except ConfigError as exc:
        print(f"vpnfleet-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except PermanentAuthError as exc:
        print(f"vpnfleet-agent: re-enrollment refused: {exc}", file=sys.stderr)
        return EXIT_AUTH
    except grpc.aio.AioRpcError as exc:
        print(f"vpnfleet-agent: controller at {config.enroll_addr} unreachable: {exc.code().name}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"vpnfleet-agent: re-enrolled as node {identity.node_id}; a running agent switches to the new "
          "certificate when the controller drops its old stream, a stopped one at its next start")
    return EXIT_OK


async def run_until_signalled(engine: Engine) -> None:
    """Run the engine; SIGTERM or SIGINT cancels it cleanly."""
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(engine.run(), name="engine")
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("stopping on signal")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = AgentConfig.load(args.config)
    except ConfigError as exc:
        print(f"vpnfleet-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.reenroll:
        return reenroll(config, args.token_file)
    if args.token_file:
        print("vpnfleet-agent: --token-file goes with --reenroll", file=sys.stderr)
        return EXIT_CONFIG

    logs = LogControl(LogBuffer(config.log_buffer_lines), config.log_level)
    try:
        asyncio.run(run_until_signalled(Engine(config, logs)))
    except ConfigError as exc:  # e.g. not enrolled and no token
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    except PermanentAuthError as exc:
        log.error("%s; the node must be re-enrolled", exc)
        return EXIT_AUTH
    finally:
        logs.close()
    return EXIT_OK
