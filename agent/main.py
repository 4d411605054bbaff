"""`vpnfleet-agent` / `python -m agent`: read the config, set up logging, run the engine until signalled.

Exit codes: 0 stopped by SIGTERM/SIGINT, 2 configuration error, 3 permanent authentication failure
(enrollment refused, or the controller refuses the node's certificate: re-enroll the node).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

import agent
from agent.config import DEFAULT_CONFIG_PATH, AgentConfig, ConfigError
from agent.engine import Engine
from agent.identity import PermanentAuthError
from agent.logbuffer import LogBuffer
from agent.logcontrol import LogControl

log = logging.getLogger("agent.main")

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_AUTH = 3

CONFIG_ENV = "VPNFLEET_AGENT_CONFIG"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vpnfleet-agent", description="vpnfleet node agent")
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_ENV, DEFAULT_CONFIG_PATH),
        help=f"agent config file (default: ${CONFIG_ENV} or {DEFAULT_CONFIG_PATH})",
    )
    parser.add_argument("--version", action="version", version=f"vpnfleet-agent {agent.__version__}")
    return parser.parse_args(argv)


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
