"""An RPC URL carries its provider's key in its path: errors show its scheme and host only."""

import pytest
from eth_account import Account

from tests.devnet import CHAIN_ID
from tritonfleet.net import free_port
from tritonfleet.payments.chain.client import Chain, ChainError, redacted
from tritonfleet.token_manager.errors import TokenManagerError, chain_errors

SECRET = "SECRETKEY0123"


def test_a_failing_rpc_url_with_a_key_is_not_echoed() -> None:
    url = f"http://127.0.0.1:{free_port()}/v3/{SECRET}"
    chain = Chain(url, CHAIN_ID, Account.create(), request_timeout_s=0.5)
    with pytest.raises(ChainError) as raised:
        chain.block_number()
    assert SECRET not in str(raised.value)
    with pytest.raises(TokenManagerError) as answered, chain_errors(chain.endpoint):
        chain.block_number()
    assert SECRET not in str(answered.value) and "http://127.0.0.1" in str(answered.value)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"https://mainnet.infura.io/v3/{SECRET}", "https://mainnet.infura.io"),
        (
            f"HTTPSConnectionPool(host='x.org', port=443): Max retries exceeded with url: /v3/{SECRET}",
            "x.org",
        ),
        (f"wss://user:{SECRET}@node.example.org:8546/ws", "wss://node.example.org:8546"),
    ],
)
def test_urls_in_text_keep_their_scheme_and_host(text: str, shown: str) -> None:
    assert SECRET not in redacted(text) and shown in redacted(text)
