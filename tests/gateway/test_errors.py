"""The gateway's errors as each front renders them: the same message and figures over HTTP
(Triton's `{"error": ...}`) and gRPC (a status of the same meaning, figures as trailing metadata)."""

import json

import grpc
import pytest
from aiohttp import web

from tritonfleet.gateway.errors import (
    AlreadyCharged,
    ApiKeyRefused,
    BodyTooLarge,
    DeadlineExceeded,
    GatewayError,
    MalformedRequest,
    PaymentRequired,
    Unavailable,
)
from tritonfleet.gateway.grpc import errors as grpc_errors
from tritonfleet.gateway.http import responses as http_responses
from tritonfleet.scheduler.errors import NoNodeAvailable, SchedulerError, UnknownModel

HINT = "Deposit credit at http://gateway/web to top up."


def body(response: web.Response) -> dict[str, object]:
    assert isinstance(response.body, bytes)
    return json.loads(response.body)


def payment_required() -> PaymentRequired:
    """As PaidPath.payment_required writes it, for a price of 5 against 2 available."""
    refused = PaymentRequired(f"insufficient credit: model 'simple' costs 5, 2 available, 3 missing. {HINT}")
    refused.figures = {"price": 5, "available": 2, "missing": 3, "top_up": HINT}
    return refused


def test_a_payment_required_carries_the_same_message_and_figures_on_both_fronts() -> None:
    refused = payment_required()
    over_http = http_responses.refusal(refused, "r-1", retry_after_s=1)
    over_grpc = grpc_errors.refusal(refused)
    assert over_http.status == 402
    assert body(over_http) == {
        "error": str(refused),
        "price": 5,
        "available": 2,
        "missing": 3,
        "top_up": HINT,
    }
    assert over_http.headers["X-Request-ID"] == "r-1"
    assert (over_grpc.code, over_grpc.details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, str(refused))
    assert dict(over_grpc.trailing) == {
        "x-tritonfleet-price": "5",
        "x-tritonfleet-available": "2",
        "x-tritonfleet-missing": "3",
        "x-tritonfleet-top-up": HINT,
    }


def test_figures_named_with_underscores_are_dashed_in_grpc_metadata() -> None:
    refused = PaymentRequired("x")
    refused.figures = {"top_up": HINT}
    assert grpc_errors.refusal(refused).trailing == (("x-tritonfleet-top-up", HINT),)


def test_an_error_without_figures_has_only_its_message() -> None:
    refused = MalformedRequest("expected a number")
    assert body(http_responses.refusal(refused, None, retry_after_s=1)) == {"error": "expected a number"}
    assert grpc_errors.refusal(refused).trailing == ()


def test_a_refused_api_key_is_401_with_a_bearer_challenge_over_http_and_unauthenticated_over_grpc() -> None:
    refused = ApiKeyRefused("unknown or revoked API key")
    over_http = http_responses.refusal(refused, "r-2", retry_after_s=1)
    assert over_http.status == 401
    assert over_http.headers["WWW-Authenticate"] == "Bearer"
    assert body(over_http) == {"error": "unknown or revoked API key"}
    over_grpc = grpc_errors.refusal(refused)
    assert (over_grpc.code, over_grpc.details) == (grpc.StatusCode.UNAUTHENTICATED, str(refused))


@pytest.mark.parametrize(
    "refused",
    [Unavailable("no node could serve model 'simple' now"), NoNodeAvailable.of("simple", None)],
    ids=["gateway", "scheduler"],
)
def test_a_503_comes_with_retry_after_over_http_and_is_unavailable_over_grpc(
    refused: GatewayError | SchedulerError,
) -> None:
    over_http = http_responses.refusal(refused, "r-3", retry_after_s=4)
    assert (over_http.status, over_http.headers["Retry-After"]) == (503, "4")
    assert body(over_http) == {"error": str(refused)}
    assert grpc_errors.refusal(refused).code == grpc.StatusCode.UNAVAILABLE


def test_only_a_503_tells_the_client_when_to_retry() -> None:
    for refused in (DeadlineExceeded("late"), payment_required(), ApiKeyRefused("no key")):
        assert "Retry-After" not in http_responses.refusal(refused, None, retry_after_s=4).headers


@pytest.mark.parametrize(
    ("refused", "status", "code"),
    [
        (MalformedRequest("bad"), 400, grpc.StatusCode.INVALID_ARGUMENT),
        (UnknownModel.of("x", None), 404, grpc.StatusCode.NOT_FOUND),
        (AlreadyCharged("charged"), 409, grpc.StatusCode.ALREADY_EXISTS),
        (BodyTooLarge("large"), 413, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (DeadlineExceeded("late"), 504, grpc.StatusCode.DEADLINE_EXCEEDED),
        (GatewayError("bug"), 500, grpc.StatusCode.INTERNAL),
    ],
)
def test_each_error_means_the_same_on_both_fronts(
    refused: GatewayError | SchedulerError, status: int, code: grpc.StatusCode
) -> None:
    assert http_responses.refusal(refused, None, retry_after_s=1).status == status
    assert grpc_errors.refusal(refused) == grpc_errors.Refusal(code, str(refused))
