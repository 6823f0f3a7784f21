"""The cluster token as an admin credential on routes that clients can reach too."""

from __future__ import annotations

import hmac

from tritonfleet.credentials import MalformedCredentials, presented_secret


def presents_token(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header presents the token, as `Bearer <token>` or as Basic's
    password (tritonclient's `BasicAuth`), compared in constant time."""
    try:
        secret = presented_secret(authorization)
    except MalformedCredentials:
        return False
    return secret is not None and hmac.compare_digest(secret.encode(), token.encode())
