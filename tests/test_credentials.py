"""The secret of an `Authorization` header, as Bearer or as Basic's password, and the cluster
token presented either way."""

from __future__ import annotations

import base64

import pytest
from tritonclient.http import Request
from tritonclient.http.auth import BasicAuth

from tritonfleet.cluster_auth import presents_token
from tritonfleet.credentials import MalformedCredentials, presented_secret

KEY = "tf_Zm9vYmFy-_secret"


def basic(raw: bytes) -> str:
    return "Basic " + base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {KEY}", f"bearer   {KEY} ", basic(f"user:{KEY}".encode()), basic(f":{KEY}".encode())],
    ids=["bearer", "bearer-spaced", "basic", "basic-no-user"],
)
def test_bearer_and_basic_present_the_same_secret(authorization: str) -> None:
    assert presented_secret(authorization) == KEY


def test_basics_password_is_all_after_the_first_colon() -> None:
    assert presented_secret(basic(b"0xAbC:pass:with:colons")) == "pass:with:colons"


def test_tritonclients_basic_auth_plugin_presents_its_password() -> None:
    request = Request({})
    BasicAuth("anyone", KEY)(request)
    assert presented_secret(request.headers["authorization"]) == KEY


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Bearer   ", "Token abc", KEY])
def test_no_header_another_scheme_or_an_empty_bearer_present_nothing(authorization: str | None) -> None:
    assert presented_secret(authorization) is None


@pytest.mark.parametrize(
    ("authorization", "wrong"),
    [
        ("Basic not*base64!", "not base64"),
        ("Basic " + KEY, "not base64"),  # the key itself, not encoded
        (basic(b"\xff\xfe:x"), "not base64"),
        (basic(KEY.encode()), "no ':'"),
        ("Basic ", "no ':'"),
        (basic(f"{KEY}:".encode()), "the password is empty"),  # the key as the user
    ],
    ids=["garbage", "unencoded", "not-utf8", "no-colon", "empty", "empty-password"],
)
def test_malformed_basic_is_refused_saying_why_without_repeating_the_header(
    authorization: str, wrong: str
) -> None:
    with pytest.raises(MalformedCredentials) as raised:
        presented_secret(authorization)
    assert wrong in str(raised.value)
    credentials = authorization.removeprefix("Basic ")
    assert KEY not in str(raised.value) and (not credentials or credentials not in str(raised.value))


def test_the_cluster_token_is_presented_as_bearer_or_as_basics_password() -> None:
    assert presents_token("Bearer cluster-secret", "cluster-secret")
    assert presents_token(basic(b"operator:cluster-secret"), "cluster-secret")
    assert not presents_token(basic(b"operator:other"), "cluster-secret")
    assert not presents_token("Basic ???", "cluster-secret")
    assert not presents_token(None, "cluster-secret")
    assert not presents_token("Bearer ", "")
