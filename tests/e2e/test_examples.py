"""NVIDIA's client examples through the gateway, on both data planes: the very calls and checks of
tests/models/test_examples.py (which makes them at one Triton), here at a gateway in front of two
nodes that both serve every example model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.cluster import DATA_PLANES, cluster
from tests.models.test_examples import (  # noqa: F401 (fixtures and tests, collected here too)
    MODELS,
    grpc_address,
    http,
    rpc,
    test_each_model_has_the_tensors_triton_documents,
    test_interleaved_sequences_on_one_grpc_stream,
    test_repeat_int32_answers_an_empty_in_with_the_final_flag_alone,
    test_repeat_int32_interleaves_requests_when_wait_is_short,
    test_repeat_int32_refuses_in_and_delay_of_different_shapes,
    test_repeat_int32_sends_one_response_per_element_then_the_final_flag,
    test_sequences_through_the_aio_stream,
    test_simple_identity_returns_bytes_that_are_not_utf8,
    test_simple_identity_returns_strings_with_nul_bytes_over_http,
    test_simple_string_adds_and_subtracts_decimal_strings_over_http,
    test_simple_string_answers_a_batch_over_grpc,
    test_simple_string_refuses_a_string_that_is_no_integer,
    test_simple_string_takes_explicit_bytes_contents,
    test_sync_sequences_answer_as_the_examples_expect,
    test_the_batchers_and_the_decoupled_policy_are_as_triton_configures_them,
    test_the_string_dyna_model_refuses_an_id_that_is_no_integer,
)
from tritonfleet.node.endpoints import TritonUrls


@pytest.fixture(scope="module", params=DATA_PLANES)
def triton(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonUrls]:
    """The gateway, where the examples' fixtures expect a Triton."""
    local = cluster(
        tmp_path_factory.mktemp("examples"),
        {"node-1": MODELS, "node-2": MODELS},
        gateway={"data_plane": request.param},
    )
    try:
        local.start()
        gw = local.config.gateway
        yield TritonUrls(http=local.gateway_url, grpc=f"grpc://{gw.host}:{gw.grpc_port}")
    finally:
        local.stop()
