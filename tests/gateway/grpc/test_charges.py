from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from tritonclient.grpc import service_pb2

from tests.devnet import depositor
from tritonfleet.config import PaymentsConfig
from tritonfleet.gateway.errors import ApiKeyRefused, PaymentRequired
from tritonfleet.gateway.grpc.charges import StreamCharges
from tritonfleet.gateway.paid import PaidPath, Payer
from tritonfleet.payments.chain.devchain import DevChain
from tritonfleet.payments.ledger.database import sqlite_url
from tritonfleet.payments.ledger.store import Ledger
from tritonfleet.payments.signin import new_api_key

HINT = "Deposit credit."


@pytest.fixture
async def paid(chain: DevChain, tmp_path: Path) -> AsyncIterator[PaidPath]:
    """The real paid path on an SQLite ledger and a real chain."""
    url = sqlite_url(tmp_path / "ledger.db")
    ledger = Ledger.open(url)
    path = PaidPath(PaymentsConfig(prices={"countdown": 2}), url, ledger, chain, HINT)
    yield path
    await path.aclose()
    ledger.close()


@pytest.fixture
async def payer(chain: DevChain, paid: PaidPath) -> Payer:
    """Alice, with 10 credits on chain and an API key."""
    alice = depositor(chain, 10)
    key, key_hash = new_api_key()
    paid.ledger.add_api_key(key_hash, alice.address)
    await paid.start()
    return paid.authenticate(f"Bearer {key}")


def request(request_id: str = "", empty_final: bool = False) -> bytes:
    message = service_pb2.ModelInferRequest(model_name="countdown", id=request_id)
    message.inputs.add(name="N", datatype="INT32", shape=[1])
    message.raw_input_contents.append(np.array([2], dtype=np.int32).tobytes())
    if empty_final:
        message.parameters["triton_enable_empty_final_response"].bool_param = True
    return message.SerializeToString()


def response(request_id: str, final: bool, outputs: int = 1, error: str = "") -> bytes:
    message = service_pb2.ModelStreamInferResponse(error_message=error)
    message.infer_response.id = request_id
    for _ in range(outputs):
        message.infer_response.outputs.add(name="COUNT", datatype="INT32", shape=[1])
    message.infer_response.parameters["triton_final_response"].bool_param = final
    return message.SerializeToString()


def sent_id(message: bytes) -> str:
    return str(service_pb2.ModelInferRequest.FromString(message).id)


def relayed_id(message: bytes | None) -> str:
    assert message is not None
    return str(service_pb2.ModelStreamInferResponse.FromString(message).infer_response.id)


def charged(paid: PaidPath, payer: Payer) -> list[tuple[str, int]]:
    return sorted((charge.request_id, charge.amount) for charge in paid.ledger.usage(payer.account))


def key_ids(paid: PaidPath, payer: Payer) -> set[str]:
    return {charge.key_id for charge in paid.ledger.usage(payer.account)}


async def test_a_request_is_charged_once_before_its_first_output_is_relayed(
    paid: PaidPath, payer: Payer
) -> None:
    charges = StreamCharges(paid, payer, "stream")
    sent = await charges.outgoing(request("mine"))
    assert sent_id(sent) == "mine", "a unique client id is kept"
    assert (
        service_pb2.ModelInferRequest.FromString(sent)
        .parameters["triton_enable_empty_final_response"]
        .bool_param
    )
    assert charged(paid, payer) == []
    assert relayed_id(await charges.incoming(response("mine", final=False))) == "mine"
    assert charged(paid, payer) == [("stream.1", 2)], "charged before the first output is relayed"
    assert key_ids(paid, payer) == {payer.key_id}, "with the key that paid"
    assert relayed_id(await charges.incoming(response("mine", final=False))) == "mine"
    assert await charges.incoming(response("mine", final=True, outputs=0)) is None, (
        "the empty final asked for us"
    )
    assert charged(paid, payer) == [("stream.1", 2)], "once"
    assert (charges.charged, charges.remaining) == (2, 8)


async def test_requests_without_an_id_or_sharing_one_are_told_apart_and_get_their_ids_back(
    paid: PaidPath, payer: Payer
) -> None:
    charges = StreamCharges(paid, payer, "stream")
    ids = [sent_id(await charges.outgoing(request(client_id))) for client_id in ("", "", "same", "same")]
    assert ids == ["stream.1", "stream.2", "same", "stream.4"]
    relayed = [relayed_id(await charges.incoming(response(sent, final=True))) for sent in reversed(ids)]
    assert relayed == ["same", "same", "", ""]
    assert [amount for _, amount in charged(paid, payer)] == [2, 2, 2, 2]


async def test_an_empty_final_the_client_asked_for_is_relayed(paid: PaidPath, payer: Payer) -> None:
    charges = StreamCharges(paid, payer, "stream")
    sent = await charges.outgoing(request("mine", empty_final=True))
    assert relayed_id(await charges.incoming(response(sent_id(sent), final=True, outputs=0))) == "mine"


async def test_a_failed_request_and_one_left_unanswered_cost_nothing(paid: PaidPath, payer: Payer) -> None:
    charges = StreamCharges(paid, payer, "stream")
    await charges.outgoing(request("bad"))
    await charges.outgoing(request("never"))
    assert paid.remaining(payer.account) == 6
    await charges.incoming(response("bad", final=True, outputs=0, error="N must be in 0..10000"))
    charges.release_all()
    assert charged(paid, payer) == [] and paid.remaining(payer.account) == 10


async def test_a_request_beyond_the_credit_is_refused_with_what_is_missing(
    paid: PaidPath, payer: Payer
) -> None:
    charges = StreamCharges(paid, payer, "stream")
    for _ in range(5):
        await charges.outgoing(request())
    with pytest.raises(PaymentRequired) as raised:
        await charges.outgoing(request())
    assert str(raised.value).startswith("insufficient credit: model 'countdown' costs 2")
    assert raised.value.figures["missing"] == 2 and raised.value.figures["top_up"] == HINT


async def test_a_key_revoked_while_its_stream_is_open_ends_it_at_the_next_request(
    paid: PaidPath, payer: Payer
) -> None:
    charges = StreamCharges(paid, payer, "stream")
    await charges.outgoing(request("before"))
    paid.ledger.revoke_api_key(payer.key_hash)
    await paid.refresh_keys()
    with pytest.raises(ApiKeyRefused, match="revoked"):
        await charges.outgoing(request("after"))
