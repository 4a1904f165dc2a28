"""The ``models``, ``routing`` and ``performance`` sections: where models come from, how a
request picks a version, and the serving defaults a model's own configuration may change."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from inferd.settings.section import Section


class ModelsSettings(Section):
    repository: Path | None = Field(
        Path("models"),
        description="Model repository folder, or a single model file; relative paths are "
        "taken from the working directory.",
    )
    allow_empty: bool = Field(
        False, description="Serve a repository that holds no model (else start-up fails)."
    )
    default_model: str | None = Field(
        None, description="Model used by /predict; the only model when there is one."
    )
    default_version: str | None = Field(
        None, description="Version (or label) used by /predict when a request names none."
    )
    poll_interval_s: float = Field(
        0.0,
        ge=0,
        description="Scan the repository this often and load what changed (new or changed "
        "version folders and model.yaml, new and removed model folders); 0: never.",
    )


class RoutingSettings(Section):
    key_header: str = Field(
        "X-Routing-Key",
        min_length=1,
        pattern=r"^[A-Za-z0-9-]+$",
        description="Header (gRPC metadata, lower-case) whose value is a request's routing "
        "key: the same key reaches the same version of a traffic split. Without it, the "
        "caller's API key name is the routing key.",
    )
    max_key_length: int = Field(
        256, ge=1, le=65536, description="Longest routing key accepted (longer: 400)."
    )


class PerformanceSettings(Section):
    max_batch_size: int = Field(
        32, ge=0, description="Default max rows per batch for models that batch."
    )
    batch_timeout_ms: float = Field(
        0.0,
        ge=0,
        le=10_000,
        description="Default max queue delay: how long the oldest request may wait for a "
        "batch to fill. 0 batches whatever is queued when an instance is free.",
    )
    max_queue_size: int = Field(
        256, ge=1, description="Requests waiting per model version before new ones get 429."
    )
    inference_timeout_s: float = Field(
        30.0, gt=0, description="Default request deadline; past it the answer is 504."
    )
    intra_op_threads: int = Field(
        1, ge=0, description="Threads a runtime may use inside one operator (0 = framework's)."
    )
    inter_op_threads: int = Field(
        1,
        ge=0,
        description="Threads a runtime may use to run independent operators at once "
        "(ONNX Runtime, TensorFlow; 0 = framework's).",
    )
    inline_max_compute_us: float = Field(
        1000.0,
        ge=0,
        le=100_000,
        description="A model whose calls take less than this on average (measured as it "
        "serves) runs a request on the event loop, without the hop to a model thread, when "
        "nothing else of that version is queued or running. 0 never does; a model with a "
        "queue delay never does.",
    )
    gil_switch_interval_us: float = Field(
        200.0,
        gt=0,
        le=100_000,
        description="How long the event loop may hold the GIL while a model thread waits "
        "for it (Python's default is 5000). A model thread needs the GIL for a moment "
        "around each runtime call; a short interval keeps it from idling behind request "
        "decoding. Raise it for models written in pure Python.",
    )
    gc_threshold: int = Field(
        10_000,
        ge=1,
        le=10_000_000,
        description="Objects allocated (and not yet freed) that start a collection of "
        "Python's youngest generation (Python's default is 700). Serving makes no reference "
        "cycles; at 700 the collector ran every few dozen requests and took about 4 % of the "
        "event loop's time, finding nothing.",
    )
