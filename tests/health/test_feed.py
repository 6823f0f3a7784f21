import asyncio

from tritonfleet.health.feed import ChangeFeed


async def test_a_wait_whose_condition_holds_returns_at_once() -> None:
    assert await ChangeFeed().wait(lambda: True, timeout_s=60) is True


async def test_a_wait_without_change_returns_false_at_the_timeout() -> None:
    loop = asyncio.get_running_loop()
    started_s = loop.time()
    assert await ChangeFeed().wait(lambda: False, timeout_s=0.05) is False
    assert 0.04 < loop.time() - started_s < 1.0


async def test_one_publish_wakes_every_waiter_whose_condition_now_holds() -> None:
    feed, state = ChangeFeed(), {"version": 0}
    waiters = [asyncio.create_task(feed.wait(lambda: state["version"] > 0, timeout_s=5)) for _ in range(500)]
    await asyncio.sleep(0.01)
    assert not any(w.done() for w in waiters)
    state["version"] = 1
    feed.publish(1)
    assert await asyncio.wait_for(asyncio.gather(*waiters), timeout=1) == [True] * 500


async def test_a_waiter_whose_condition_still_fails_keeps_waiting_after_a_publish() -> None:
    feed = ChangeFeed()
    waiter = asyncio.create_task(feed.wait(lambda: False, timeout_s=0.1))
    await asyncio.sleep(0.01)
    feed.publish(1)
    await asyncio.sleep(0.01)
    assert not waiter.done()
    assert await waiter is False
