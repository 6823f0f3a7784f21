"""Why the scheduler could not name a node; each error carries the HTTP status to answer."""

from __future__ import annotations


class SchedulerError(Exception):
    """Root of the scheduler's errors.

    SchedulerError (500)
    ├── ClusterTokenRequired (401)     a call without the cluster token
    ├── UnknownModel (404)             no node in the view reports this model (and version)
    └── NoNodeAvailable (503)          the model is known, but no node can take a request now
        └── SchedulerUnavailable (503) the scheduler service itself cannot be reached
    """

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ClusterTokenRequired(SchedulerError):
    status = 401


class UnknownModel(SchedulerError):
    status = 404

    @classmethod
    def of(cls, model: str, version: str | None) -> UnknownModel:
        # Triton's own wording, so that clients cannot tell the gateway from a single Triton.
        if version is None:
            return cls(f"Request for unknown model: '{model}' is not found")
        return cls(f"Request for unknown model: '{model}' version {version} is not found")


class NoNodeAvailable(SchedulerError):
    status = 503

    @classmethod
    def of(cls, model: str, version: str | None) -> NoNodeAvailable:
        what = f"'{model}'" if version is None else f"'{model}' version {version}"
        return cls(f"no node is serving model {what} now")


class SchedulerUnavailable(NoNodeAvailable):
    """A NoNodeAvailable, so that callers handling that one need nothing more for this."""
