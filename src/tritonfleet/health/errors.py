"""Errors of the health checker, each carrying the HTTP status it is answered with."""

from __future__ import annotations


class HealthError(Exception):
    """Root of the health checker's errors.

    HealthError (500)
    ├── InvalidNodeRequest (400)      the body or the query is malformed, or path and body disagree
    └── ClusterTokenRefused (401)    a write without the cluster token
    """

    status = 500


class InvalidNodeRequest(HealthError):
    status = 400


class ClusterTokenRefused(HealthError):
    status = 401
