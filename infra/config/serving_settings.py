"""``model-deploy:serving``: the serving container's settings, the same on every cloud and target."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from infra.config.fields import ConfigModel, between, fail


def _auto_or_between(minimum: int, maximum: int, what: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int):
            fail(f"must be auto or a whole number {minimum}-{maximum} ({what})")
        if not minimum <= value <= maximum:
            fail(f"is out of range: {what} must be auto or {minimum}-{maximum}")
        return value

    return BeforeValidator(check)


ServerLogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class ServingConfig(ConfigModel):
    """``model-deploy:serving``: how the serving container runs, the same on every cloud and target.

    Each setting becomes the ``MODEL_SERVER_*`` variable of the same name (``inference/config.py``);
    unset ones keep the server's defaults. See the README's model-serve section for what they do.
    """

    workers: Annotated[int | Literal["auto"], _auto_or_between(1, 256, "a worker count")] = Field(
        default=1, description="worker processes over one loaded model; auto: one per CPU"
    )
    max_batch_size: Annotated[int | Literal["auto"], _auto_or_between(1, 4096, "a batch size")] | None = Field(
        default=None, description="rows per model call at most; auto: measured at start-up"
    )
    max_batch_delay_ms: Annotated[int, between(0, 1000, "a batching delay in ms")] | None = Field(
        default=None, description="wait this long for a batch to fill (0: never wait)"
    )
    max_queue: Annotated[int, between(1, 100_000, "a queue length")] | None = Field(
        default=None, description="queued requests before 503"
    )
    compute_threads: Annotated[int, between(1, 256, "a thread count")] | None = Field(
        default=None, description="framework threads per worker (default: the CPU quota / workers)"
    )
    log_level: ServerLogLevel | None = Field(default=None, description="DEBUG, INFO, WARNING or ERROR")

    def environment(self) -> dict[str, str]:
        """The ``MODEL_SERVER_*`` variables for the settings that are set."""
        values = {
            "MODEL_SERVER_WORKERS": self.workers if self.workers != 1 else None,
            "MODEL_SERVER_MAX_BATCH_SIZE": self.max_batch_size,
            "MODEL_SERVER_MAX_BATCH_DELAY_MS": self.max_batch_delay_ms,
            "MODEL_SERVER_MAX_QUEUE": self.max_queue,
            "MODEL_SERVER_COMPUTE_THREADS": self.compute_threads,
            "MODEL_SERVER_LOG_LEVEL": self.log_level,
        }
        return {name: str(value) for name, value in values.items() if value is not None}
