import aiohttp
import httpx
import pytest
from fastapi import FastAPI, Response

from tritonfleet.config import NodeRoute, Policy
from tritonfleet.net import free_port, http_url
from tritonfleet.protocol import NodeState
from tritonfleet.scheduler.client import EmbeddedScheduler, Pick, RemoteScheduler
from tritonfleet.scheduler.errors import NoNodeAvailable, SchedulerUnavailable, UnknownModel

from .fakes import TOKEN, FakeHealthChecker, FakeNetwork, node, running_service, served


def test_a_pick_is_a_frozen_value() -> None:
    pick = Pick("a", "http://a")
    assert pick == Pick("a", "http://a")
    with pytest.raises(AttributeError):
        pick.url = "http://b"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("route", "url"), [(NodeRoute.TRITON, "http://a-triton"), (NodeRoute.MANAGER, "http://a-manager")]
)
async def test_embedded_picks_from_the_watched_nodes_by_route(route: NodeRoute, url: str) -> None:
    checker = FakeHealthChecker([node("a", "m")])
    async with httpx.AsyncClient(transport=FakeNetwork({"checker": checker.app})) as http:
        scheduler = EmbeddedScheduler(["http://checker"], Policy.P2C, route, http, token=TOKEN)
        async with scheduler:
            assert await scheduler.watcher.wait_for(lambda nodes: bool(nodes), 1.0)
            assert await scheduler.pick("m", "1") == Pick("a", url)
            with pytest.raises(UnknownModel):
                await scheduler.pick("other")


async def test_embedded_feedback_steers_least_outstanding() -> None:
    checker = FakeHealthChecker([node("a", "m"), node("b", "m")])
    async with httpx.AsyncClient(transport=FakeNetwork({"checker": checker.app})) as http:
        scheduler = EmbeddedScheduler(
            ["http://checker"], Policy.LEAST_OUTSTANDING, NodeRoute.TRITON, http, token=TOKEN
        )
        await scheduler.start()
        assert await scheduler.watcher.wait_for(lambda nodes: len(nodes) == 2, 1.0)
        first = await scheduler.pick("m")
        scheduler.acquire(first.node_id)
        second = await scheduler.pick("m")
        assert second.node_id != first.node_id
        scheduler.release(first.node_id)
        scheduler.acquire(second.node_id)
        assert (await scheduler.pick("m")).node_id == first.node_id
        await scheduler.aclose()


async def test_remote_picks_through_the_service() -> None:
    checker = FakeHealthChecker([node("a", "m"), node("b", "m")])
    async with running_service(checker) as (app, _), served(app) as url, aiohttp.ClientSession() as session:
        remote = RemoteScheduler(f"{url}/", NodeRoute.MANAGER, session, TOKEN)
        await remote.start()
        assert await remote.pick("m", "1", exclude=["a"]) == Pick("b", "http://b-manager")
        remote.acquire("b")
        remote.release("b")
        await remote.aclose()


async def test_remote_maps_404_and_503_back_to_the_same_errors_and_messages() -> None:
    checker = FakeHealthChecker([node("a", "m", state=NodeState.STARTING)])
    async with running_service(checker) as (app, _), served(app) as url, aiohttp.ClientSession() as session:
        remote = RemoteScheduler(url, NodeRoute.TRITON, session, TOKEN)
        with pytest.raises(UnknownModel, match=r"^Request for unknown model: 'x' is not found$"):
            await remote.pick("x")
        with pytest.raises(NoNodeAvailable, match=r"^no node is serving model 'm' now$") as err:
            await remote.pick("m")
    assert type(err.value) is NoNodeAvailable


async def test_an_unreachable_service_is_a_503_that_names_it() -> None:
    nobody = http_url("127.0.0.1", free_port())
    async with aiohttp.ClientSession() as session:
        remote = RemoteScheduler(nobody, NodeRoute.TRITON, session, TOKEN)
        with pytest.raises(SchedulerUnavailable, match=f"scheduler service at {nobody} unreachable") as err:
            await remote.pick("m")
    assert isinstance(err.value, NoNodeAvailable)
    assert err.value.status == 503


@pytest.mark.parametrize(
    ("status", "body"), [(500, b"boom"), (200, b'{"node": "a"}')], ids=["server error", "bad body"]
)
async def test_an_unexpected_answer_from_the_service_is_a_503(status: int, body: bytes) -> None:
    odd = FastAPI()
    odd.get("/v1/schedule")(lambda: Response(body, status_code=status))
    async with served(odd) as url, aiohttp.ClientSession() as session:
        remote = RemoteScheduler(url, NodeRoute.TRITON, session, TOKEN)
        with pytest.raises(SchedulerUnavailable, match=f"scheduler service at {url} answered"):
            await remote.pick("m")
