import io
import logging

import pytest

from agent.logbuffer import LogBuffer, LogBufferHandler
from agent.logcontrol import LogControl


def test_push_and_drain_in_order():
    buffer = LogBuffer(10)
    buffer.push("info", "agent", "one", ts_ms=1)
    buffer.push("warning", "v2ray", "two", ts_ms=2)
    batch = buffer.drain(200)
    assert [(l.level, l.source, l.message, l.ts_ms) for l in batch.lines] == [
        ("info", "agent", "one", 1),
        ("warning", "v2ray", "two", 2),
    ]
    assert batch.dropped == 0
    assert buffer.drain(200) is None


def test_bound_drops_oldest_and_counts():
    buffer = LogBuffer(3)
    for i in range(5):
        buffer.push("info", "agent", f"line {i}")
    assert len(buffer) == 3
    assert buffer.dropped == 2
    batch = buffer.drain(200)
    assert [l.message for l in batch.lines] == ["line 2", "line 3", "line 4"]
    assert batch.dropped == 2
    buffer.push("info", "agent", "after")
    assert buffer.drain(200).dropped == 0  # the count resets once reported


def test_drain_respects_the_batch_size():
    buffer = LogBuffer(1000)
    for i in range(450):
        buffer.push("info", "agent", str(i))
    sizes = []
    while (batch := buffer.drain(200)) is not None:
        sizes.append(len(batch.lines))
    assert sizes == [200, 200, 50]


def test_a_drop_is_reported_even_without_lines():
    buffer = LogBuffer(1)
    buffer.push("info", "agent", "a")
    buffer.push("info", "agent", "b")
    buffer.drain(1)
    assert buffer.drain(200) is None


def test_handler_filters_by_level_and_names_levels():
    buffer = LogBuffer(100)
    logger = logging.getLogger("agent.test_logbuffer")
    logger.propagate = False
    handler = LogBufferHandler(buffer, level=logging.WARNING)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("hidden")
        logger.info("hidden too")
        logger.warning("shown %d", 1)
        logger.critical("bad")
        try:
            raise KeyError("k")
        except KeyError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    lines = buffer.drain(200).lines
    assert [(l.level, l.source, l.message) for l in lines] == [
        ("warning", "agent", "shown 1"),
        ("critical", "agent", "bad"),
        ("error", "agent", "failed: KeyError: 'k'"),
    ]


def test_log_control_changes_the_level_at_run_time():
    buffer = LogBuffer(100)
    control = LogControl(buffer, "warning", stream=io.StringIO())
    log = logging.getLogger("agent.test_logcontrol")
    try:
        log.info("not yet")
        control.set_level("debug")
        log.debug("now")
        assert control.level == "debug"
        with pytest.raises(KeyError):
            control.set_level("loud")
    finally:
        control.close()
    assert [l.message for l in buffer.drain(200).lines] == ["now"]
