"""ReadDeadline: the stream reads' deadline that moves without a timer per read."""

import asyncio

import pytest

from chatapp.llm.deadline import ReadDeadline

NEVER = 30.0  # a read that would wait this long is cut by the deadline long before


def later(seconds: float) -> float:
    return asyncio.get_running_loop().time() + seconds


async def test_a_read_that_outlasts_the_deadline_raises_timeout_error():
    deadline = ReadDeadline(later(0.05))
    with pytest.raises(TimeoutError):
        await deadline.read(asyncio.sleep(NEVER))
    deadline.close()


async def test_moving_the_deadline_after_each_read_lets_a_long_stream_go_on():
    deadline = ReadDeadline(later(0.2))
    for _ in range(8):  # 8 x 0.05 s: twice the first deadline in all
        assert await deadline.read(asyncio.sleep(0.05, result="token")) == "token"
        deadline.move(later(0.2))
    deadline.close()


async def test_time_between_reads_is_never_cut_but_the_next_read_fails_at_once():
    deadline = ReadDeadline(later(0.05))
    assert await deadline.read(asyncio.sleep(0, result=1)) == 1
    await asyncio.sleep(0.2)  # the consumer's own work, past the deadline: not cancelled
    waited = asyncio.sleep(NEVER)
    with pytest.raises(TimeoutError):
        await deadline.read(waited)
    assert waited.cr_frame is None  # closed, never left pending
    deadline.close()


async def test_moving_the_deadline_earlier_takes_effect():
    deadline = ReadDeadline(later(NEVER))
    assert await deadline.read(asyncio.sleep(0, result=1)) == 1
    deadline.move(later(0.05))
    with pytest.raises(TimeoutError):
        await deadline.read(asyncio.sleep(NEVER))
    deadline.close()


async def test_a_cancellation_from_elsewhere_stays_a_cancellation():
    deadline = ReadDeadline(later(NEVER))
    reading = asyncio.create_task(deadline.read(asyncio.sleep(NEVER)))
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    deadline.close()


async def test_after_a_timeout_the_task_is_not_left_cancelling():
    deadline = ReadDeadline(later(0.05))
    with pytest.raises(TimeoutError):
        await deadline.read(asyncio.sleep(NEVER))
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0.01)  # no stray CancelledError lands in the caller
    deadline.close()
