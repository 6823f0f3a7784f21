"""The cluster token as an admin credential on routes that clients can reach too."""

from __future__ import annotations

import hmac


def presents_token(authorization: str | None, token: str) -> bool:
    """Whether an `Authorization` header is `Bearer <token>`, compared in constant time."""
    scheme, _, credentials = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())
