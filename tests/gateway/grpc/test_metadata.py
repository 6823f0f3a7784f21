from tritonfleet.gateway.grpc.metadata import read_metadata


def test_the_api_key_stays_at_the_gateway_and_the_rest_goes_on_with_the_request_id() -> None:
    incoming = read_metadata(
        [
            ("authorization", "Bearer tf_key"),
            ("x-request-id", "r-1"),
            ("user-agent", "grpc-python/1.85"),
            ("triton_grpc_error", "true"),
            ("trace-bin", b"\x01\x02"),
        ]
    )
    assert (incoming.request_id, incoming.authorization) == ("r-1", "Bearer tf_key")
    assert incoming.upstream == (
        ("triton_grpc_error", "true"),
        ("trace-bin", b"\x01\x02"),
        ("x-request-id", "r-1"),
    )


def test_a_call_without_a_request_id_gets_a_new_one() -> None:
    first, second = read_metadata(None), read_metadata([])
    assert len(first.request_id) == 32 and first.request_id != second.request_id
    assert first.authorization is None and first.upstream == (("x-request-id", first.request_id),)
