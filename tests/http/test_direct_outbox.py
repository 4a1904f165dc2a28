"""The direct path's outbox (http/direct.py): the answers of a loop turn are written back to
back at the next turn, the one answer no other request awaits at once, and a client gone
meanwhile or a failing write loses no other answer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from inferd.http import direct


class Transport:
    def __init__(self, log: list[str], name: str, fails: bool = False) -> None:
        self.log = log
        self.name = name
        self.fails = fails

    def write(self, data: bytes) -> None:
        if self.fails:
            raise RuntimeError("the transport broke")
        self.log.append(f"{self.name} wrote {data.decode()}")

    def close(self) -> None:
        self.log.append(f"{self.name} closed")


class Connection:
    """What the outbox uses of a connection: its loop, transport and completion."""

    def __init__(self, log: list[str], name: str, fails: bool = False) -> None:
        self.loop = asyncio.get_running_loop()
        self.transport = Transport(log, name, fails)
        self.log = log
        self.name = name

    def on_response_complete(self) -> None:
        self.log.append(f"{self.name} complete")


def cycle(keep_alive: bool = True) -> direct.Cycle:
    return direct.Cycle({}, None, keep_alive)  # type: ignore[arg-type]


def expecting(count: int) -> direct.Outbox:
    outbox = direct.Outbox()
    outbox.expected = count
    return outbox


async def test_the_answers_of_a_turn_are_written_together_at_the_next_turn() -> None:
    log: list[str] = []
    outbox = expecting(3)
    first, second = Connection(log, "a"), Connection(log, "b")
    cycles = [cycle(), cycle(keep_alive=False)]
    outbox.add(first, cycles[0], b"1")
    outbox.add(second, cycles[1], b"2")
    assert log == []  # a third answer is still awaited: nothing is written this turn
    assert not cycles[0].response_complete
    await asyncio.sleep(0)
    assert log == ["a wrote 1", "a complete", "b wrote 2", "b closed", "b complete"]
    assert cycles[0].response_complete and cycles[1].response_complete
    assert outbox.expected == 1


async def test_the_one_answer_no_other_request_awaits_is_written_at_once() -> None:
    log: list[str] = []
    outbox = expecting(1)
    outbox.add(Connection(log, "a"), cycle(), b"1")
    assert log == ["a wrote 1", "a complete"]
    assert outbox.expected == 0


async def test_the_last_answer_of_a_turn_joins_the_others() -> None:
    log: list[str] = []
    outbox = expecting(2)
    outbox.add(Connection(log, "a"), cycle(), b"1")
    outbox.add(Connection(log, "b"), cycle(), b"2")  # none awaited now, but a turn is due
    assert log == []
    await asyncio.sleep(0)
    assert log == ["a wrote 1", "a complete", "b wrote 2", "b complete"]


async def test_a_client_gone_meanwhile_gets_nothing_and_counts_out() -> None:
    log: list[str] = []
    outbox = expecting(3)
    gone, staying = cycle(), cycle()
    outbox.add(Connection(log, "a"), gone, b"1")
    outbox.add(Connection(log, "b"), staying, b"2")
    gone.disconnected = True  # before the turn's end
    skipped = cycle()
    skipped.disconnected = True  # before its answer was ready
    outbox.add(Connection(log, "c"), skipped, b"3")
    await asyncio.sleep(0)
    assert log == ["b wrote 2", "b complete"]
    assert outbox.expected == 0


async def test_a_failing_write_loses_no_other_answer(caplog: pytest.LogCaptureFixture) -> None:
    log: list[str] = []
    outbox = expecting(2)
    outbox.add(Connection(log, "a", fails=True), cycle(), b"1")
    outbox.add(Connection(log, "b"), cycle(), b"2")
    with caplog.at_level(logging.ERROR, "inferd.http"):
        await asyncio.sleep(0)
    assert log == ["b wrote 2", "b complete"]
    assert "unhandled error writing a direct answer" in caplog.text
