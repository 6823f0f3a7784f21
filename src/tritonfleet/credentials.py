"""The secret an `Authorization` header presents, in either scheme a client may send it in.

    Bearer <secret>                     the scheme of our own docs and services
    Basic base64(<user>:<secret>)       tritonclient's one auth plugin, `BasicAuth(user, secret)`

The user of Basic is not read: the secret alone names its holder (an API key its account; the
cluster token the cluster). Both the gateway's API keys and the cluster token are read here.
"""

from __future__ import annotations

import base64
import binascii


class MalformedCredentials(ValueError):
    """Basic credentials that are not base64 of `user:secret` with a secret. The message says
    what is wrong without repeating any of the header."""


def presented_secret(authorization: str | None) -> str | None:
    """The secret of `Bearer <secret>` or of Basic's password; None without a header, for
    another scheme or for a Bearer with nothing after it. Raises MalformedCredentials."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if scheme == "bearer":
        return credentials or None
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise MalformedCredentials("malformed Basic credentials: not base64 of 'user:password'") from None
    _user, colon, secret = decoded.partition(":")
    if not colon:
        raise MalformedCredentials("malformed Basic credentials: no ':' between user and password")
    if not secret:
        raise MalformedCredentials("malformed Basic credentials: the password is empty")
    return secret
