import asyncio

from .fakes import AUTH, beat_json, owner, register, running


async def test_a_watch_without_since_answers_at_once() -> None:
    async with running() as h:
        response = await h.client.get("/v1/nodes/watch", params={"timeout_s": 10})
    assert response.json() == {"version": 0, "nodes": [], "warming_s": 3.0}


async def test_a_watcher_behind_the_registry_is_answered_at_once() -> None:
    async with running() as h:
        await h.client.post("/v1/nodes/register", json=beat_json("n1"), headers=AUTH)
        response = await h.client.get("/v1/nodes/watch", params={"since": 0, "timeout_s": 10})
    assert response.json()["version"] == 1


async def test_a_watcher_ahead_of_the_registry_is_answered_at_once_to_resync_after_a_restart() -> None:
    async with running() as h:
        response = await h.client.get("/v1/nodes/watch", params={"since": 57, "timeout_s": 10})
    assert response.json()["version"] == 0


async def test_a_current_watcher_waits_and_is_answered_on_the_next_change() -> None:
    async with running() as h:
        watch = asyncio.create_task(h.client.get("/v1/nodes/watch", params={"since": 0, "timeout_s": 10}))
        await asyncio.sleep(0.05)
        assert not watch.done()
        await h.client.post("/v1/nodes/register", json=beat_json("n1"), headers=AUTH)
        response = await asyncio.wait_for(watch, timeout=1)
    assert response.json()["version"] == 1
    assert [n["node_id"] for n in response.json()["nodes"]] == ["n1"]


async def test_a_watch_without_change_answers_the_same_version_at_its_timeout() -> None:
    async with running() as h:
        response = await h.client.get("/v1/nodes/watch", params={"since": 0, "timeout_s": 0.05})
    assert response.json() == {"version": 0, "nodes": [], "warming_s": 3.0}


async def test_the_watch_timeout_is_capped_by_the_configured_maximum() -> None:
    async with running(watch_timeout_s=0.05) as h:
        response = await asyncio.wait_for(
            h.client.get("/v1/nodes/watch", params={"since": 0, "timeout_s": 600}), timeout=2
        )
    assert response.status_code == 200


async def test_a_load_only_change_reaches_watchers_within_a_tick() -> None:
    async with running() as h:
        secret = await register(h.client, "n1")
        watch = asyncio.create_task(h.client.get("/v1/nodes/watch", params={"since": 1, "timeout_s": 10}))
        await h.client.post("/v1/nodes/n1/heartbeat", json=beat_json("n1", pending=5), headers=owner(secret))
        response = await asyncio.wait_for(watch, timeout=1)
    assert response.json()["version"] == 2
    assert response.json()["nodes"][0]["pending"] == 5


async def test_many_concurrent_watchers_are_all_answered_by_one_change() -> None:
    async with running() as h:
        params = {"since": 0, "timeout_s": 10}
        watches = [asyncio.create_task(h.client.get("/v1/nodes/watch", params=params)) for _ in range(200)]
        await asyncio.sleep(0.1)
        await h.client.post("/v1/nodes/register", json=beat_json("n1"), headers=AUTH)
        responses = await asyncio.wait_for(asyncio.gather(*watches), timeout=5)
    assert {r.json()["version"] for r in responses} == {1}


async def test_a_negative_watch_timeout_is_400() -> None:
    async with running() as h:
        response = await h.client.get("/v1/nodes/watch", params={"timeout_s": -1})
    assert response.status_code == 400
