"""Pay-per-inference end to end: a real chain, token manager, settler, gateway and Triton node."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from tests.e2e.cluster import cluster, paid_sections, simple_body
from tests.postgres import postgres_schema
from tritonfleet.config import to_env
from tritonfleet.payments.chain.client import Chain, connect
from tritonfleet.payments.ledger.database import default_ledger_url
from tritonfleet.payments.ledger.states import BatchState
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.up.cluster import LocalCluster

PRICE = 1  # `simple`'s price in the default config


# Each ledger with one data plane: every test runs on both ledgers and both data planes, on two
# clusters rather than four.
@pytest.fixture(scope="module", params=[("sqlite", "python"), ("postgresql", "envoy")], ids="-".join)
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    tmp = tmp_path_factory.mktemp("paid")
    ledger, data_plane = request.param
    with ExitStack() as stack:
        ledger_url = stack.enter_context(postgres_schema()) if ledger == "postgresql" else ""
        sections = paid_sections(tmp, ledger_url)
        models = ["simple", "text_generation"]
        local = cluster(tmp, {"node-1": models}, **sections, gateway={"data_plane": data_plane})
        stack.callback(local.stop)
        local.start()
        yield local


@pytest.fixture(scope="module")
def chain(fleet: LocalCluster) -> Chain:
    return connect(fleet.config, signing=False)


def sign_in(fleet: LocalCluster, user: LocalAccount) -> str:
    tm = fleet.token_manager_url
    message = httpx.post(f"{tm}/v1/auth/challenge", json={"address": user.address}).json()["message"]
    signature = Account.sign_message(encode_defunct(text=message), user.key).signature.to_0x_hex()
    answer = httpx.post(
        f"{tm}/v1/auth/verify", json={"address": user.address, "message": message, "signature": signature}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["api_key"])


def funded_user(fleet: LocalCluster, credit: int) -> tuple[LocalAccount, str]:
    user: LocalAccount = Account.create()
    key = sign_in(fleet, user)
    if credit:
        topped = httpx.post(
            f"{fleet.token_manager_url}/v1/faucet",
            json={"address": user.address, "amount": credit},
            timeout=60,
        )
        assert topped.status_code == 200, topped.text
    wait_for(
        lambda: gateway_credit(fleet, key).get("deposit") == credit, "the gateway knows the key and deposit"
    )
    return user, key


def gateway_credit(fleet: LocalCluster, key: str) -> dict[str, int]:
    """The gateway's own view of the key's credit; free of charge."""
    answer = httpx.get(f"{fleet.gateway_url}/v1/credit", headers={"Authorization": f"Bearer {key}"})
    return answer.json() if answer.status_code == 200 else {}


def infer(fleet: LocalCluster, key: str | None, request_id: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if request_id:
        headers["X-Request-ID"] = request_id
    return httpx.post(f"{fleet.gateway_url}/v2/models/simple/infer", json=simple_body(1), headers=headers)


def wait_for(done: object, what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.1)


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def ledger(fleet: LocalCluster) -> Ledger:
    return Ledger.open(default_ledger_url(fleet.config))


def test_a_paid_inference_is_charged_settled_on_chain_and_balances_agree(
    fleet: LocalCluster, chain: Chain
) -> None:
    user, key = funded_user(fleet, credit=100)
    answer = infer(fleet, key, "paid-1")
    assert answer.status_code == 200
    assert answer.headers["X-Tritonfleet-Charge"] == str(PRICE)
    assert int(answer.headers["X-Tritonfleet-Credit-Remaining"]) == 100 - PRICE
    with ledger(fleet) as book:
        charges = {charge.request_id: charge for charge in book.usage(user.address)}
        assert charges["paid-1"].amount == PRICE
        (listed,) = httpx.get(f"{fleet.token_manager_url}/v1/keys", headers=auth(key)).json()["keys"]
        assert charges["paid-1"].key_id == listed["key_id"], "usage is kept per API key"
        wait_for(
            lambda: (
                all(b.state is BatchState.CONFIRMED for b in book.settlements(user.address))
                and book.unsettled_by_account().get(user.address, 0) == 0
            ),
            "the settler settles",
        )
        assert all(batch.tx_hash for batch in book.settlements(user.address))
    assert chain.deposit_of(user.address) == 100 - PRICE

    def balance() -> dict[str, int]:
        return dict(httpx.get(f"{fleet.token_manager_url}/v1/balance", headers=auth(key)).json())

    # The gateway's lease holds some credit until the account has been idle for a renewal.
    wait_for(lambda: balance()["reserved"] == 0, "the idle lease is given back")
    assert balance()["deposit"] == 99 and balance()["unsettled"] == 0 and balance()["available"] == 99


def node_inferences(fleet: LocalCluster) -> int:
    """`simple`'s inferences by the node's own Triton, as its statistics count them."""
    (node,) = httpx.get(f"{fleet.health_url}/v1/nodes", headers=fleet.cluster_auth).json()["nodes"]
    stats = httpx.get(f"{node['triton_http_url']}/v2/models/simple/stats").json()["model_stats"]
    return sum(entry["inference_count"] for entry in stats)


def test_a_replayed_request_id_reaches_no_node_and_is_charged_once(fleet: LocalCluster) -> None:
    user, key = funded_user(fleet, credit=10)
    before = node_inferences(fleet)
    first = infer(fleet, key, "same-id")
    assert first.status_code == 200 and first.headers["X-Tritonfleet-Charge"] == "1"
    # Triton counts an inference once its answer has gone.
    wait_for(lambda: node_inferences(fleet) == before + 1, "Triton counts the first inference")
    for _ in range(3):
        again = infer(fleet, key, "same-id")
        assert again.status_code == 409 and "outputs" not in again.json()
        assert "charged already" in again.json()["error"] and again.headers["X-Request-ID"] == "same-id"
    time.sleep(0.5)
    assert node_inferences(fleet) == before + 1, "no replay ran an inference"
    with ledger(fleet) as book:
        assert [c.amount for c in book.usage(user.address) if c.request_id == "same-id"] == [1]
    # Request ids are scoped per account: another account cannot squat a victim's id.
    other, other_key = funded_user(fleet, credit=10)
    assert infer(fleet, other_key, "same-id").status_code == 200
    with ledger(fleet) as book:
        assert [c.request_id for c in book.usage(other.address)] == ["same-id"]


def test_a_bad_request_id_gets_400_and_fails_no_one_elses_charge(fleet: LocalCluster) -> None:
    """aiohttp reads a 0xFF byte as a lone surrogate, which no database column takes: recorded
    with others' charges, it used to fail the whole group after their inferences had run."""
    user, key = funded_user(fleet, credit=100)
    bad_ids: list[bytes | str] = [b"bad-\xff-id", "x" * 129, "tab\tinside"]

    def send(request_id: bytes | str) -> int:
        headers = {**auth(key), "X-Request-ID": request_id}
        url = f"{fleet.gateway_url}/v2/models/simple/infer"
        return httpx.post(url, json=simple_body(1), headers=headers).status_code

    good_ids: list[bytes | str] = [f"good-{i}" for i in range(30)]
    with ThreadPoolExecutor(16) as pool:
        statuses = dict(zip(good_ids + bad_ids * 3, pool.map(send, good_ids + bad_ids * 3), strict=True))
    assert all(statuses[request_id] == 400 for request_id in bad_ids)
    assert all(statuses[request_id] == 200 for request_id in good_ids)
    with ledger(fleet) as book:
        assert sorted(c.request_id for c in book.usage(user.address)) == sorted(good_ids)


def test_an_inference_the_node_refuses_is_not_charged_and_holds_nothing(fleet: LocalCluster) -> None:
    user, key = funded_user(fleet, credit=10)
    wrong_shape = {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "INT32", "data": [1, 2, 3]}]}
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "refused-by-triton"}
    url = f"{fleet.gateway_url}/v2/models/simple/infer"
    answer = httpx.post(url, json=wrong_shape, headers=headers)
    assert answer.status_code == 400 and "X-Tritonfleet-Charge" not in answer.headers, answer.text
    assert "error" in answer.json(), "Triton's own refusal, as it wrote it"
    with ledger(fleet) as book:
        assert book.usage(user.address) == []
    # Its price was freed: the whole deposit still serves.
    for i in range(10):
        assert infer(fleet, key, f"after-{i}").status_code == 200


def test_generate_and_its_stream_are_each_charged_once_before_any_of_the_answer_goes_out(
    fleet: LocalCluster,
) -> None:
    user, key = funded_user(fleet, credit=10)
    base = f"{fleet.gateway_url}/v2/models/text_generation"
    whole = httpx.post(
        f"{base}/generate", json={"text_input": "hi", "max_tokens": 4}, headers=auth(key), timeout=30
    )
    assert whole.status_code == 200 and whole.headers["X-Tritonfleet-Charge"] == "1", whole.text
    assert whole.json()["text_output"]
    body = {"text_input": "hi", "max_tokens": 4, "stream": True}
    with httpx.stream("POST", f"{base}/generate_stream", json=body, headers=auth(key), timeout=30) as stream:
        assert stream.status_code == 200 and stream.headers["X-Tritonfleet-Charge"] == "1"
        assert int(stream.headers["X-Tritonfleet-Credit-Remaining"]) >= 0
        streamed = [line for line in stream.iter_lines() if line.startswith("data: ")]
    assert len(streamed) == 4, "every event, though charged on the first"
    refused = httpx.post(f"{base}/generate_stream", json={"max_tokens": 4}, headers=auth(key))
    assert refused.status_code == 400 and "X-Tritonfleet-Charge" not in refused.headers
    with ledger(fleet) as book:
        assert [c.amount for c in book.usage(user.address)] == [1, 1]


def test_no_key_or_a_wrong_key_gets_401(fleet: LocalCluster) -> None:
    for key in (None, "tf_not-a-key"):
        answer = infer(fleet, key)
        assert answer.status_code == 401 and answer.headers["WWW-Authenticate"] == "Bearer"
        assert "API key" in answer.json()["error"]


def test_no_credit_gets_402_saying_what_is_missing_and_how_to_top_up(fleet: LocalCluster) -> None:
    _, key = funded_user(fleet, credit=0)
    answer = infer(fleet, key)
    assert answer.status_code == 402
    body = answer.json()
    assert body["missing"] == PRICE and body["available"] == 0
    assert "faucet" in body["top_up"] and "PaymentVault" in body["top_up"]


def test_a_revoked_key_is_refused(fleet: LocalCluster) -> None:
    _, key = funded_user(fleet, credit=10)
    headers = {"Authorization": f"Bearer {key}"}
    (listed,) = httpx.get(f"{fleet.token_manager_url}/v1/keys", headers=headers).json()["keys"]
    assert httpx.delete(
        f"{fleet.token_manager_url}/v1/keys/{listed['key_id']}", headers=headers
    ).status_code in (
        200,
        204,
    )
    wait_for(lambda: infer(fleet, key).status_code == 401, "the gateway drops the revoked key")


def test_concurrent_paid_requests_never_overspend_and_everything_settles(
    fleet: LocalCluster, chain: Chain
) -> None:
    deposit, per_account, accounts = 30, 50, 10
    users = [funded_user(fleet, credit=deposit) for _ in range(accounts)]
    jobs = [(user, key, f"load-{user.address}-{i}") for user, key in users for i in range(per_account)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda job: (job[0].address, infer(fleet, job[1], job[2]).status_code), jobs))
    assert {status for _, status in answers} <= {200, 402}
    served = {user.address: 0 for user, _ in users}
    for address, status in answers:
        served[address] += status == 200
    for address, count in served.items():
        assert 0 < count <= deposit // PRICE, (
            f"{address} was served {count} requests on a deposit of {deposit}"
        )
    with ledger(fleet) as book:
        wait_for(lambda: not any(book.unsettled_by_account().get(a, 0) for a in served), "all settled", 60)
        charged = {a: sum(c.amount for c in book.usage(a, limit=1000)) for a in served}
    assert charged == {a: n * PRICE for a, n in served.items()}, "ledger total = served requests x price"
    on_chain = {a: deposit - chain.deposit_of(a) for a in served}
    assert on_chain == charged, "settled on chain = ledger"


def test_with_the_chain_down_requests_are_served_on_known_credit_and_settle_later(
    fleet: LocalCluster, chain: Chain
) -> None:
    user, key = funded_user(fleet, credit=20)
    assert fleet.chain is not None
    fleet.chain.stop()
    try:
        answers = [infer(fleet, key, f"offline-{i}") for i in range(5)]
        assert [answer.status_code for answer in answers] == [200] * 5, "served within the known credit"
        with ledger(fleet) as book:
            assert book.unsettled_by_account()[user.address] == 5 * PRICE, "charges queue in the ledger"
    finally:
        fleet.chain.start()
    with ledger(fleet) as book:
        wait_for(
            lambda: book.unsettled_by_account().get(user.address, 0) == 0,
            "settled after the chain is back",
            60,
        )
    assert chain.deposit_of(user.address) == 20 - 5 * PRICE


def test_reconcile_finds_ledger_and_chain_in_agreement(fleet: LocalCluster, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tritonfleet", "reconcile"],
        env={**fleet.env, **to_env(fleet.config)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ledger and chain agree" in done.stdout
