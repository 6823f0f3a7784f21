"""Errors of the web backend, each answered as `{"error": ...}` with its HTTP status.

WebError                  500  anything unexpected
├── BadInput              422  a value the page sent is out of range or malformed
├── TooLarge              413  a body or tensor over the limits
├── NotFound              404  an unknown model, or no model of the kind asked for
└── BadUpstream         502  the gateway or token manager answered something unusable
    ├── Unreachable       502  it refused or dropped the connection
    ├── UpstreamTooSlow   504  it did not answer in time
    └── Refused           its status  it answered an error (401, 402, 400, 503...) itself
"""

from __future__ import annotations

from typing import Any


class WebError(Exception):
    status = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        # Extra fields for the page (a link to the wallet, what is missing), sent beside `error`.
        self.details = details

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


class BadInput(WebError):
    status = 422


class TooLarge(WebError):
    status = 413


class NotFound(WebError):
    status = 404


class BadUpstream(WebError):
    status = 502


class Unreachable(BadUpstream):
    status = 502


class UpstreamTooSlow(BadUpstream):
    status = 504


class Refused(BadUpstream):
    """The upstream's own error answer, passed on with its status."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.status = status
