"""Errors of the health checker, each carrying the HTTP status it is answered with."""

from __future__ import annotations


class HealthError(Exception):
    """Root of the health checker's errors.

    HealthError (500)
    ├── InvalidNodeRequest (400)      the body or the query is malformed, or path and body disagree
    ├── ClusterTokenRefused (401)     a request to /v1/nodes without the cluster token
    ├── UnknownNode (404)             a heartbeat from a node that is not registered: register first
    └── NodeClaimRefused              a claim on a node id that the node's secret does not back
        ├── NodeSecretRefused (403)   a heartbeat or deregistration without the node's secret
        └── NodeIdTaken (409)         a registration of a live node's id without its secret
    """

    status = 500


class InvalidNodeRequest(HealthError):
    status = 400


class ClusterTokenRefused(HealthError):
    status = 401


class UnknownNode(HealthError):
    status = 404


class NodeClaimRefused(HealthError):
    """Carries the node id, and the reason that labels the refusal in the log and the metrics."""

    reason = ""

    def __init__(self, node_id: str, message: str) -> None:
        super().__init__(message)
        self.node_id = node_id


class NodeSecretRefused(NodeClaimRefused):
    status = 403
    reason = "node_secret"


class NodeIdTaken(NodeClaimRefused):
    status = 409
    reason = "node_id_taken"
