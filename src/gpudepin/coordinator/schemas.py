"""HTTP payloads of API v1. New fields always get defaults."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from gpudepin import INLINE_RESULT_BYTES


class ChallengeIn(BaseModel):
    address: str


class LoginIn(BaseModel):
    message: str = Field(max_length=2000)
    signature: str = Field(max_length=200)


class JobIn(BaseModel):
    kind: str = Field(description="render, infer or train")
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, str] = Field(description="input name -> sha256 of an uploaded blob")
    price_per_task: str = Field(
        description="tokens offered per task unit (a frame for render); the maximum in the market"
    )
    gpu_class: str | None = Field(default=None, description="market: required GPU class")
    min_vram_gb: float = Field(default=0.0, description="market: minimum VRAM per GPU")
    task_seconds: float = Field(default=0.0, ge=0, description="market: est. seconds per unit")
    max_attempts: int = Field(default=3, ge=1, le=20)
    residency: dict[str, list[str]] | None = Field(
        default=None,
        description="allow_regions, deny_regions, require_tags, deny_tags (lists of names)",
    )
    tier: str = Field(default="consumer", description="consumer or enterprise")
    deadline_s: float | None = Field(
        default=None, gt=0, description="completion deadline (enterprise SLA), seconds"
    )


class RegisterIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    region: str = Field(default="local", min_length=1, max_length=40)
    operator: str = Field(default="", max_length=100)
    hardware: dict[str, Any]
    agent_version: str = ""


class HeartbeatIn(BaseModel):
    held: list[str] | None = Field(default=None, max_length=256)  # tasks the agent runs


class ResultIn(BaseModel):
    sha256: str
    signature: str = Field(max_length=200)
    meta: dict[str, Any] = Field(default_factory=dict)
    # the result's bytes, base64, instead of an upload beforehand (saves a round trip)
    content_b64: str | None = Field(default=None, max_length=(INLINE_RESULT_BYTES + 2) // 3 * 4)


class TaskResultIn(ResultIn):
    task_id: str = Field(max_length=80)


class ResultsIn(BaseModel):
    results: list[TaskResultIn] = Field(min_length=1, max_length=64)


class AmountIn(BaseModel):
    amount: str


class WithdrawIn(BaseModel):
    amount: str
    source: str = "available"


class FailIn(BaseModel):
    reason: str = Field(max_length=1000)
