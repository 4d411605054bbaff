"""Run ``controller.main`` with cProfile switched on and off by signals (used by agents.py --profile-controller).

SIGUSR1 starts profiling the main thread (the asyncio loop); SIGUSR2 stops it and writes the next file of
PREFIX-steady.prof, PREFIX-rounds.prof, PREFIX-3.prof, ...
"""

from __future__ import annotations

import cProfile
import signal
import sys

from controller.main import main

NAMES = ["steady", "rounds"]


def install(prefix: str) -> None:
    state = {"profiler": None, "count": 0}

    def start(_sig, _frame) -> None:  # noqa: ANN001
        if state["profiler"] is None:
            state["profiler"] = cProfile.Profile()
            state["profiler"].enable()

    def stop(_sig, _frame) -> None:  # noqa: ANN001
        profiler = state["profiler"]
        if profiler is None:
            return
        profiler.disable()
        state["profiler"] = None
        name = NAMES[state["count"]] if state["count"] < len(NAMES) else str(state["count"] + 1)
        state["count"] += 1
        profiler.dump_stats(f"{prefix}-{name}.prof")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)


if __name__ == "__main__":
    install(sys.argv[1])
    sys.exit(main([]))
