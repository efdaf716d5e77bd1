"""Router settings: from flags, a YAML config file, and `LOCALMODEL_ROUTER_*` environment variables.

Flags win over the file, the file over the environment (merged by `localmodel.settings_file`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class StaticModel(BaseModel):
    """One model served by fixed backend addresses (static discovery)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(min_length=1, description="the name clients send as `model`")
    aliases: list[str] = Field(default_factory=list, description="other names that route to this model")
    endpoints: list[str] = Field(min_length=1, description="backend gRPC addresses, host:port")
    max_tokens: int | None = Field(
        default=None, alias="maxTokens", gt=0, description="cap on tokens generated per request; None: no cap"
    )
    shares_prefill: bool = Field(
        default=False,
        alias="sharesPrefill",
        description="the backends are localmodel's llama.cpp backend, which decodes a request's n answers "
        "from one prefill; otherwise each answer is a backend request of its own",
    )


class RouterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="LOCALMODEL_ROUTER_", extra="forbid")

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8080, ge=0, le=65535)
    discovery: Literal["static", "kubernetes"] = Field(
        default="static",
        description="static: the `models` below; kubernetes: LocalModels and their EndpointSlices",
    )
    namespaces: list[str] = Field(
        default_factory=list, description="kubernetes discovery: namespaces to watch; empty: all"
    )
    models: list[StaticModel] = Field(default_factory=list, description="static routes (static discovery)")
    api_keys: list[SecretStr] = Field(
        default_factory=list, description="accepted `Authorization: Bearer` keys; empty: no authentication"
    )
    api_keys_file: Path | None = Field(
        default=None,
        description="a file of more accepted keys, one per line (a mounted Secret; keeps keys out of `ps`)",
    )
    # Limits. Chat histories with long documents are a few MB at most; larger bodies are mistakes or abuse.
    max_request_bytes: int = Field(default=8 * 1024 * 1024, gt=0, description="largest request body, bytes")
    # OpenAI's limit for an uploaded audio file; at most 60 MiB, as the file travels to the backend in one
    # gRPC message (64 MiB at most).
    max_audio_bytes: int = Field(
        default=25 * 1024 * 1024,
        gt=0,
        le=60 * 1024 * 1024,
        description="largest audio file of /v1/audio/transcriptions and /translations, bytes (25 MiB)",
    )
    request_timeout_seconds: float = Field(
        default=600.0, gt=0, description="deadline for one backend call, streams included"
    )
    max_in_flight_per_model: int = Field(
        default=64, gt=0, description="requests sent to one model's backends at once; more wait"
    )
    max_waiting_per_model: int = Field(
        default=256, ge=0, description="requests that may wait for a model; more are refused with 429"
    )
    max_inputs_per_request: int = Field(
        default=2048,
        gt=0,
        description="prompts of one completion request, or inputs of one embeddings request (OpenAI's limit)",
    )
    queue_timeout_seconds: float = Field(
        default=30.0, gt=0, description="longest wait for a free place before 503 with Retry-After"
    )
    backend_tries: int = Field(
        default=3, ge=1, description="replicas tried when a backend cannot be reached before any byte is sent"
    )
    connect_timeout_seconds: float = Field(
        default=5.0, gt=0, description="how long to wait for a backend connection before trying another"
    )
    max_held_per_model: int = Field(
        default=256, ge=0, description="requests that may wait for a starting model; more get 503"
    )
    hold_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="longest wait for a starting model's first backend (process start and model load)",
    )
    unreachable_grace_seconds: float = Field(
        default=2.0,
        ge=0,
        description="when every replica refused connections, how long to wait for discovery to replace "
        "them (a restarted process, a rescheduled pod) before answering 502; static routes never wait",
    )
    stream_keepalive_seconds: float = Field(
        default=10.0,
        gt=0,
        description="a stream not open after this long (its model is starting) starts its response and "
        "gets an SSE comment this often, so proxies do not cut the idle connection",
    )

    @model_validator(mode="after")
    def _keys_from_file(self) -> RouterSettings:
        if self.api_keys_file is not None:
            try:
                lines = self.api_keys_file.read_text().splitlines()
            except OSError as error:
                raise ValueError(
                    f"api_keys_file: cannot read {self.api_keys_file}: {error.strerror}"
                ) from None
            keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
            if not keys:
                raise ValueError(f"api_keys_file: {self.api_keys_file} holds no key")
            self.api_keys = [*self.api_keys, *(SecretStr(key) for key in keys)]
        return self

    @model_validator(mode="after")
    def _one_source_of_models(self) -> RouterSettings:
        if self.discovery == "kubernetes" and self.models:
            raise ValueError("static `models` cannot be combined with kubernetes discovery")
        return self
