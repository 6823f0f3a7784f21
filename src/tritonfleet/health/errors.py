"""Errors of the health checker, each carrying the HTTP status it is answered with."""

from __future__ import annotations


class HealthError(Exception):
    """Root of the health checker's errors.

    HealthError (500)
    ├── BadRequest (400)      the body or the query is malformed, or path and body disagree
    └── Unauthorized (401)    a write without the cluster token
    """

    status_code = 500


class BadRequest(HealthError):
    status_code = 400


class Unauthorized(HealthError):
    status_code = 401
