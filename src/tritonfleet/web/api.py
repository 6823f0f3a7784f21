"""Request bodies of the web backend's JSON API (the pages are its only intended client)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class GenerateBody(BaseModel):
    # Empty: the first model that implements the text-to-image contract.
    model: str = ""
    prompt: str = ""
    steps: int = 20
    samples: int = 1
    guidance_scale: float = 7.5
    # Empty: a random seed, returned with the images so that a result can be made again.
    seed: int | None = None


class InferBody(BaseModel):
    version: str = ""
    # Input name → a value filling the whole tensor, or nested lists of the tensor's shape.
    inputs: dict[str, Any] = Field(default_factory=dict)


class ChallengeBody(BaseModel):
    address: str = Field(min_length=1, max_length=100)


class VerifyBody(BaseModel):
    address: str = Field(min_length=1, max_length=100)
    message: str = Field(min_length=1, max_length=10_000)
    signature: str = Field(min_length=1, max_length=1_000)


class FaucetBody(BaseModel):
    amount: int = 1000
