"""Cluster-wide model control: Triton's repository `load` and `unload`, applied to every node
whose repository holds the model. One flow for both fronts; each renders its outcome.

    1. read every schedulable node's repository index (what its repository holds, loaded or not);
    2. send the request, unchanged, to each node that holds the model, and to each whose index
       could not be read (its own answer then says whether it has the model); when no node
       holds it, to every node, so that a model no repository has gets Triton's own answer;
    3. wait for every answer, then, bounded, for the routing view to show the change on the
       nodes that made it (their next heartbeat), so that a client that asks the gateway at
       once finds the model ready, or gone, as it would at a single Triton;
    4. merge (Outcome): all succeeded is Triton's success; all failed alike is that answer, as a
       node gave it (a malformed config override, an unknown model); anything else an error
       naming each node that failed, and why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from tritonfleet.cluster_auth import presents_token
from tritonfleet.gateway.errors import GatewayError, Unavailable
from tritonfleet.health.watch import NodeWatcher
from tritonfleet.protocol import NodeView

log = logging.getLogger(__name__)

# The status of one node's answer as its front speaks it: an HTTP status, a gRPC status code.
Code = TypeVar("Code")


class ModelControlUnauthorized(GatewayError):
    """(401, a GatewayError.) Model control changes what the whole cluster serves: it takes the
    operator's credential, the cluster token, never a user's API key."""

    status = 401

    def __init__(self) -> None:
        super().__init__(
            "model control needs the cluster token: 'Authorization: Bearer <cluster token>' "
            "(over gRPC, as metadata 'authorization')"
        )


class Action(StrEnum):
    LOAD = "load"
    UNLOAD = "unload"

    @property
    def done(self) -> str:
        return f"{self.value}ed"


@dataclass(frozen=True, slots=True)
class NodeAnswer(Generic[Code]):
    node_id: str
    ok: bool
    code: Code
    # Triton's error message as the node gave it; why the node gave none (never its address).
    error: str = ""
    # Whether the node's Triton answered (else the answer is the gateway's, about the node).
    answered: bool = True


class NodeControl(Protocol[Code]):
    """One front's calls to one node, for one request: the only side effects of the flow."""

    async def holdings(self, node: NodeView) -> Collection[str] | None:
        """The model names of the node's repository index; None when it cannot be read."""

    async def apply(self, node: NodeView) -> NodeAnswer[Code]:
        """The node's answer to the request; a node that gives none is a failure."""


@dataclass(frozen=True, slots=True)
class Outcome(Generic[Code]):
    action: Action
    model: str
    answers: tuple[NodeAnswer[Code], ...]

    @property
    def succeeded(self) -> list[str]:
        return [answer.node_id for answer in self.answers if answer.ok]

    @property
    def failed(self) -> list[NodeAnswer[Code]]:
        return [answer for answer in self.answers if not answer.ok]

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def failed_nodes(self) -> str:
        """For scripts, beside the message: a JSON field over HTTP, trailing metadata over gRPC."""
        return ",".join(answer.node_id for answer in self.failed)

    def relayed(self) -> NodeAnswer[Code] | None:
        """Triton's own answer, speaking for every node: all failed, and alike."""
        failed = self.failed
        alike = len({(answer.code, answer.error) for answer in failed}) == 1
        if alike and len(failed) == len(self.answers) and failed[0].answered:
            return failed[0]
        return None

    def code(self, mixed: Code) -> Code:
        """The failures' status when they share one, else `mixed`."""
        codes = {answer.code for answer in self.failed}
        return codes.pop() if len(codes) == 1 else mixed

    def message(self) -> str:
        failed = self.failed
        reasons = "; ".join(f"{answer.node_id}: {answer.error.strip()}" for answer in failed)
        text = (
            f"failed to {self.action} '{self.model}' on {len(failed)} of {len(self.answers)} nodes: {reasons}"
        )
        if self.succeeded:
            text += f"; {self.action.done} on {', '.join(self.succeeded)}"
        return text


class ModelControl:
    """The flow (module docstring), over the gateway's view of the nodes."""

    def __init__(self, watcher: NodeWatcher, cluster_token: str, view_wait_s: float) -> None:
        self.watcher = watcher
        self.cluster_token = cluster_token
        self.view_wait_s = view_wait_s

    def authorize(self, authorization: str | None) -> None:
        """ModelControlUnauthorized unless `authorization` presents the cluster token."""
        if not presents_token(authorization, self.cluster_token):
            raise ModelControlUnauthorized()

    async def apply(
        self,
        authorization: str | None,
        action: Action,
        model: str,
        nodes: Sequence[NodeView],
        control: NodeControl[Code],
    ) -> Outcome[Code]:
        """`authorization`: the caller's credential (`Bearer <cluster token>`)."""
        self.authorize(authorization)
        if not nodes:
            raise Unavailable("no node is serving now")
        holdings = await asyncio.gather(*(control.holdings(node) for node in nodes))
        targets = [node for node, held in zip(nodes, holdings, strict=True) if held is None or model in held]
        answers = await asyncio.gather(*(control.apply(node) for node in targets or nodes))
        outcome = Outcome(action, model, tuple(answers))
        log.info(
            "model control",
            extra={
                "action": action.value,
                "model": model,
                "succeeded": outcome.succeeded,
                "failed": {answer.node_id: answer.error for answer in outcome.failed},
            },
        )
        await self._follow(outcome)
        return outcome

    async def _follow(self, outcome: Outcome[Code]) -> None:
        """Until the view shows the model served (load) or not (unload) on the nodes that said so."""
        changed = set(outcome.succeeded)
        if not changed:
            return
        serving = outcome.action is Action.LOAD

        def followed(view: list[NodeView]) -> bool:
            return all(
                node.serves(outcome.model, None) is serving for node in view if node.node_id in changed
            )

        if not await self.watcher.wait_for(followed, self.view_wait_s):
            log.warning(
                "the node view did not follow model control in time",
                extra={"action": outcome.action.value, "model": outcome.model, "wait_s": self.view_wait_s},
            )
