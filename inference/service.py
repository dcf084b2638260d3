"""The served model: find the package, verify it, load it, warm it up, and run predictions.

Loading happens before the HTTP port opens, so a platform never sees a healthy
health check over a model that failed to load: a package that fails
verification, loading or warm-up makes ``load_service`` raise, and the
entrypoint exits non-zero with one log line.
"""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.admission import AdmissionGate
from inference.batching import INLINE_BELOW_S, Batcher, BatchObserver, ItemBatcher
from inference.codecs import DecodeLimits
from inference.config import DEFAULT_MODEL_DIR, ServerConfig
from inference.errors import BadRequestError, NotReadyError
from inference.offload import Offloader
from inference.response_limits import (
    ResponseLimit,
    encode_within,
    request_rows,
    smallest_answer_row_bytes,
    varying_outputs,
)
from model_package.errors import LoadError, ManifestError, MissingFileError
from model_package.example import load_arrays
from model_package.formats import LoadedModel, check_inputs, get_format
from model_package.manifest import MANIFEST_FILENAME, Manifest, Signature
from model_package.verify import verify_behaviour, verify_integrity

_log = logging.getLogger(__name__)

#: Default adaptive-batching limits when neither the package nor the environment sets them.
DEFAULT_MAX_BATCH_SIZE = 64
DEFAULT_MAX_BATCH_DELAY_MS = 0.0
#: Health checks fail once every thread of a pool has been on one call for this many request deadlines.
STUCK_AFTER_DEADLINES = 10


@dataclass
class ModelService:
    """One loaded package and the machinery that runs it."""

    package_dir: Path
    manifest: Manifest
    model: LoadedModel | None
    """The format loader's model; ``None`` when user code's ``model_fn`` supplies its own."""
    user_code: Any | None
    """An ``inference.user_code.UserCodeHandler`` when the package ships ``code/inference.py``."""
    batcher: Batcher | None
    user_code_gate: AdmissionGate | None
    """Admission control for user code's request hooks (``None`` without user code)."""
    request_timeout: float
    allow_non_finite: bool
    limits: DecodeLimits
    """How large one request may be once decoded (rows x the model's input size)."""
    load_seconds: float
    warmup_seconds: float
    ready: bool = False
    draining: bool = False
    pipeline: Any | None = None
    """An ``inference.pipeline.PipelineService`` when the package declares a pipeline."""
    response_limit: ResponseLimit = field(default_factory=lambda: ResponseLimit(6 * 1024 * 1024, "local"))
    """The platform's response-size limit (``MODEL_SERVER_MAX_RESPONSE_BYTES``)."""
    hook_batcher: ItemBatcher | None = None
    """Batches requests through user code's ``predict_batch_fn`` (``None`` unless the code defines it)."""
    offload: Offloader = field(default_factory=Offloader, repr=False)
    """Decodes and encodes of large bodies, off the event loop."""
    _started: bool = field(default=False, repr=False)
    _reported_wedged: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        """The model name the protocols expose (the package name)."""
        return self.manifest.name

    @property
    def signature(self) -> Signature:
        """The package's input/output signature."""
        return self.manifest.signature

    @functools.cached_property
    def varying_axes(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """Each input's axes besides the batch whose size varies by request (a sequence, candidates)."""
        return tuple(
            (spec.name, axes)
            for spec in self.signature.inputs
            if (axes := tuple(axis for axis, size in enumerate(spec.shape) if axis and size == -1))
        )

    @property
    def healthy(self) -> bool:
        """Loaded, warmed up, not shutting down and not wedged: what every health route reports."""
        return self.ready and not self.draining and not self._wedged()

    def _wedged(self) -> bool:
        """Whether every thread of a pool has been on one call for over :data:`STUCK_AFTER_DEADLINES` deadlines.

        Python cannot stop a call once it has started: a model or hook call that never returns (a
        deadlock, a hung download in user code) keeps its thread, and once every thread of a pool is
        held, every request is a 504 while health checks said ready, so the platform never replaced
        the instance. A call ten deadlines old has nobody waiting for it; a slow one that ends makes
        the instance healthy again.
        """
        pools = (self.batcher, self.hook_batcher, self.user_code_gate, getattr(self.pipeline, "gate", None))
        stuck = max((pool.stuck_for for pool in pools if pool is not None), default=0.0)
        wedged = stuck > STUCK_AFTER_DEADLINES * self.request_timeout
        if wedged and not self._reported_wedged:
            _log.error(
                "every compute thread has been on one call for %.0f s (over %d request deadlines of %g s): "
                "health checks fail until one returns, so that the platform can replace this instance",
                stuck,
                STUCK_AFTER_DEADLINES,
                self.request_timeout,
            )
        self._reported_wedged = wedged
        return wedged

    def warm_up(self, *, on_compute_thread: bool = True) -> None:
        """Run the bundled example and check its outputs: the warm-up doubles as the behaviour check.

        On the compute thread that will serve requests (the default), so its framework thread
        pools are the warm ones. Raises ``ModelPackageError`` when the outputs do not match.
        """
        if self.model is None or self.batcher is None:
            return
        start = time.perf_counter()
        model, package_dir, manifest = self.model, self.package_dir, self.manifest

        def check() -> Any:
            return verify_behaviour(package_dir, manifest, model=model)

        report = self.batcher.run_on_compute_thread(check) if on_compute_thread else check()
        self.warmup_seconds = time.perf_counter() - start
        _log.info("warm-up matched the bundled example", extra={"max_abs_error": report.worst})

    def tune_batching(self, *, on_compute_thread: bool = True) -> None:
        """Set the batcher's cap from measurements of the bundled example (``MODEL_SERVER_MAX_BATCH_SIZE=auto``)."""
        if self.model is None or self.batcher is None:
            return
        from inference.batch_tuning import tune_max_batch_size

        model, batcher = self.model, self.batcher
        example = load_arrays(self.package_dir / self.manifest.example.inputs)

        def tune() -> Any:
            return tune_max_batch_size(model.predict, example, batcher.max_batch_size)

        tuning = batcher.run_on_compute_thread(tune) if on_compute_thread else tune()
        batcher.max_batch_size = tuning.max_batch_size
        _log.info(
            "batch size tuned",
            extra={
                "max_batch_size": tuning.max_batch_size,
                "rows_per_second": {size: round(rate) for size, rate in tuning.rows_per_second.items()},
                "seconds": round(tuning.seconds, 3),
            },
        )

    async def start(self) -> None:
        """Start the batcher on the server's event loop, then report ready."""
        if not self._started:
            if self.batcher is not None:
                await self.batcher.start()
            if self.hook_batcher is not None:
                await self.hook_batcher.start()
            if self.user_code_gate is not None:
                await self.user_code_gate.start()
            if self.pipeline is not None:
                await self.pipeline.start()
        self._started = True
        self.ready = True

    async def stop(self, *, grace: float | None = None) -> None:
        """Report not-ready and finish queued work (graceful shutdown).

        ``grace`` bounds each wait for work still running (see ``Batcher.stop``); ``None`` waits for all of it.
        """
        self.draining = True
        if self.batcher is not None and self._started:
            await self.batcher.stop(grace=grace)
        if self.hook_batcher is not None and self._started:
            await self.hook_batcher.stop(grace=grace)
        if self.user_code_gate is not None and self._started:
            await self.user_code_gate.stop(grace=grace)
        if self.pipeline is not None and self._started:
            await self.pipeline.stop(grace=grace)
        self.offload.shutdown(wait=grace is None)

    async def invoke_user_code(
        self, body: bytes, content_type: str, accept: str, context: Any, *, timeout: float | None = None
    ) -> tuple[bytes, str]:
        """Run one request through the package's hooks under the same admission rules as the batcher.

        Readiness, the queue bound (503 with ``Retry-After``) and the request deadline (504) apply;
        ``context`` is the request's ``inference.user_code.RequestContext``. With ``predict_batch_fn``
        the request joins the hook batcher's queue; otherwise it waits for one of the gate's threads.
        ``timeout`` is what is left of the request's deadline (default: all of it).
        """
        from inference.user_code import HookRequest

        result: tuple[bytes, str] = await self._run_hooks(
            HookRequest(context, body=body, content_type=content_type, accept=accept), timeout
        )
        return result

    async def predict_with_hooks(
        self, inputs: Mapping[str, np.ndarray], context: Any, *, timeout: float | None = None
    ) -> dict[str, np.ndarray]:
        """Decoded tensors (the Open Inference Protocol) through the package's prediction hook, tensors back.

        Validated like :meth:`predict` (signature, rows, NaN policy); ``input_fn``/``output_fn`` do not run.
        """
        from inference.user_code import HookRequest

        outputs: dict[str, np.ndarray] = await self._run_hooks(
            HookRequest(context, tensors=self._validate(inputs)), timeout
        )
        return outputs

    async def _run_hooks(self, request: Any, timeout: float | None) -> Any:
        handler, gate = self.user_code, self.user_code_gate
        timeout = self.request_timeout if timeout is None else timeout
        if handler is None or gate is None:
            raise NotReadyError("this model has no user code")
        if not self.ready:
            raise NotReadyError("the model is not ready to serve predictions")
        if self.hook_batcher is not None:
            result = await self.hook_batcher.submit_item(request, timeout=timeout)
        else:

            def call() -> Any:
                outcome = handler.run_batch([request])[0]
                if isinstance(outcome, Exception):
                    raise outcome
                return outcome

            result = await gate.run(call, timeout=timeout)
        request_rows.set(request.rows)  # what input_fn decoded, when it has rows (for the response-size check)
        return result

    async def predict(
        self, inputs: Mapping[str, np.ndarray], *, timeout: float | None = None, from_client: bool = True
    ) -> dict[str, np.ndarray]:
        """Validate named inputs against the signature and run them through the batcher.

        ``timeout`` is what is left of the request's deadline (default: all of it); ``from_client=False``
        for inputs a pipeline made (an empty text is its own, not an attention mask a client sent).
        """
        # Not `healthy`: while draining, requests the server already accepted still complete;
        # only health checks turn 503 (and the batcher refuses work once it has stopped).
        if self.batcher is None or not self.ready:
            raise NotReadyError("the model is not ready to serve predictions")
        # Each request is validated on its own before it joins a batch, so a bad input fails alone.
        checked = self._validate(inputs, from_client=from_client)
        # The middleware's response-size check tells "ask for fewer rows" (413) from "one row is too big" (500).
        request_rows.set(int(next(iter(checked.values())).shape[0]))
        return await self.batcher.submit(checked, timeout=self.request_timeout if timeout is None else timeout)

    def check_answer_fits(self, inputs: Mapping[str, np.ndarray]) -> None:
        """413 (or a logged 500 for one row) before the model runs when no encoding of the answer can fit."""
        name, first = next(iter(inputs.items()), (None, None))
        # Not validated yet: an input of another shape than the signature's (a single instance sent
        # flat, whose first axis counts features, not rows; rows of the wrong width) is left to
        # validation's 400, not counted in rows here: "send fewer rows" would be the wrong advice.
        spec = next((spec for spec in self.signature.inputs if spec.name == name), None)
        if (
            first is not None
            and first.ndim
            and spec is not None
            and first.ndim == len(spec.shape)
            and all(want in (-1, got) for got, want in zip(first.shape[1:], spec.shape[1:], strict=True))
        ):
            self.response_limit.check_before_computing(int(first.shape[0]), self._smallest_answer_row)

    @functools.cached_property
    def _smallest_answer_row(self) -> int:
        return smallest_answer_row_bytes(self.signature.outputs)

    def encode(self, outputs: Mapping[str, np.ndarray], accept: str | None, *, default: str) -> tuple[bytes, str]:
        """The response body and media type for ``outputs``, refused (413/500) if over the response limit.

        A body whose estimated size is far over the limit is refused before it is built.
        """
        from inference.codecs import encode_response

        return encode_within(
            self.response_limit,
            outputs,
            lambda part: encode_response(part, accept, self.signature, default=default),
            lambda encoded: len(encoded[0]),
        )

    def _validate(self, inputs: Mapping[str, np.ndarray], *, from_client: bool = True) -> dict[str, np.ndarray]:
        checked = check_inputs(self.signature, inputs)
        if any(array.ndim == 0 or array.shape[0] == 0 for array in checked.values()):
            raise BadRequestError("the request holds an empty batch; send at least one instance")
        if self.varying_axes:
            _refuse_empty_axes(checked, self.varying_axes)
            rules = getattr(self.model, "axis_rules", None)  # tied axes and maxima the artifact declares
            if rules:
                rules.check(checked)
        if from_client and self.signature.inputs[0].shape[:1] == (-1,):
            # A model of fixed batches takes rows a client pads with all-0 masks to fill one.
            _refuse_rows_masked_whole(checked)
        self.limits.check_rows(checked)
        if not self.allow_non_finite:
            _reject_non_finite(checked)
        return checked


def _refuse_empty_axes(inputs: Mapping[str, np.ndarray], varying: tuple[tuple[str, tuple[int, ...]], ...]) -> None:
    """A 400 for an input empty along a varying axis (``[[]]``: a row of no tokens, no candidates).

    The signature lets the size vary, not vanish: models compute nothing meaningful on it (the tiny
    encoder's masked mean answered ``null``, NaN over zero tokens, as a 200) or fail in the
    framework (a 500 counted against the endpoint), and which one depends on the format.
    """
    for name, axes in varying:
        shape = inputs[name].shape
        for axis in axes:
            if shape[axis] == 0:
                raise BadRequestError(
                    f"input {name!r} has shape {list(shape)}: nothing on axis {axis}, whose size may vary "
                    "between requests but not be 0; send at least one value there"
                )


#: The input Hugging Face's convention names for the mask over a sequence: 1 a token to read, 0 padding.
_ATTENTION_MASK = "attention_mask"


def _refuse_rows_masked_whole(inputs: Mapping[str, np.ndarray]) -> None:
    """A 400 for a row whose attention mask is all 0: a sequence with no token to read.

    The empty row of :func:`_refuse_empty_axes` by another name: the tiny encoder answered ``null``
    (NaN, a masked mean over nothing) as a 200 on every protocol. Only an integer mask of
    one row per sequence (``[batch, tokens]``) is read as one: a float mask may be additive, where 0
    means "attend", and a boolean one PyTorch's key-padding mask, where True means "padding".
    """
    mask = inputs.get(_ATTENTION_MASK)
    if mask is None or mask.ndim != 2 or mask.dtype.kind not in "iu" or not mask.shape[1]:
        return
    empty = ~mask.any(axis=1)
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise BadRequestError(
            f"row {row} of input {_ATTENTION_MASK!r} is all 0: it masks every token, leaving the model "
            "nothing to read; mark at least one token with 1"
        )


def _reject_non_finite(inputs: Mapping[str, np.ndarray]) -> None:
    for name, array in inputs.items():
        # One BLAS call clears the common case: a finite sum of squares means no NaN or infinity (an
        # overflow of the squares only sends us to the element-wise check).
        if array.dtype.kind != "f" or np.isfinite(np.vdot(array, array)):
            continue
        if not np.isfinite(array).all():
            raise BadRequestError(
                f"input {name!r} contains NaN or infinity, which this model does not accept "
                "(set MODEL_SERVER_ALLOW_NON_FINITE=true if it should)"
            )


def locate_package(config: ServerConfig) -> Path:
    """The package directory: the explicit flag, else /opt/ml/model, else a download of AIP_STORAGE_URI."""
    if config.model_dir is not None:
        if not (config.model_dir / MANIFEST_FILENAME).is_file():
            raise MissingFileError(f"--model-dir {config.model_dir} holds no {MANIFEST_FILENAME}: not a model package")
        return config.model_dir
    if (DEFAULT_MODEL_DIR / MANIFEST_FILENAME).is_file():
        return DEFAULT_MODEL_DIR
    if config.storage_uri:
        from model_package.publish import fetch

        dest = Path(tempfile.mkdtemp(prefix="model-")) / "package"
        _log.info("downloading the model package", extra={"uri": config.storage_uri})
        fetch(config.storage_uri, dest, expected_digest=config.expected_digest)
        return dest
    raise MissingFileError(
        f"no model package: pass --model-dir, mount one at {DEFAULT_MODEL_DIR}, or set AIP_STORAGE_URI"
    )


def load_service(config: ServerConfig, *, observer: BatchObserver | None = None) -> ModelService:
    """Find, verify, load and warm up the package; raises ``ModelPackageError`` on any failure."""
    start = time.perf_counter()
    package_dir = locate_package(config)
    manifest = verify_integrity(package_dir)
    user_code = None
    model: LoadedModel | None = None
    fmt = get_format(manifest.format)

    def load_model() -> LoadedModel:
        return fmt.load(package_dir, manifest, threads=config.compute_threads)

    if manifest.code is not None:
        from inference.user_code import UserCodeHandler, install_requirements

        if config.install_requirements and manifest.code.requirements:
            install_requirements(package_dir, manifest)
        user_code = UserCodeHandler.load(
            package_dir,
            manifest,
            default_model=load_model,
            default_accept=config.default_accept,
            allow_non_finite=config.allow_non_finite,
            limits=DecodeLimits.for_body_limit(config.max_request_bytes),
        )
        if user_code is not None and _is_loaded_model(user_code.model):
            model = user_code.model
    else:
        model = load_model()
    load_seconds = time.perf_counter() - start

    batcher = None
    hook_batcher = None
    batch_size, delay_ms = batching_settings(config, manifest)
    if user_code is not None and user_code.batched:
        # The same limits as the model's batcher: one request through input_fn is one row of a batch.
        hook_batcher = ItemBatcher(
            user_code.run_batch,
            max_batch_size=batch_size,
            max_delay=delay_ms / 1000,
            max_queue=config.max_queue,
            observer=observer,
        )
    if model is not None:
        batcher = Batcher(
            model.predict,
            max_batch_size=batch_size,
            max_delay=delay_ms / 1000,
            max_queue=config.max_queue,
            observer=observer,
            inline_below=INLINE_BELOW_S,
        )
    service = ModelService(
        package_dir=package_dir,
        manifest=manifest,
        model=model,
        user_code=user_code,
        batcher=batcher,
        # User code gets as many threads as the model has compute threads: hooks are mostly model calls.
        user_code_gate=(
            AdmissionGate(concurrency=config.compute_threads, max_queue=config.max_queue)
            if user_code is not None
            else None
        ),
        request_timeout=config.request_timeout,
        allow_non_finite=config.allow_non_finite,
        limits=DecodeLimits.for_body_limit(config.max_request_bytes),
        load_seconds=load_seconds,
        warmup_seconds=0.0,
        response_limit=ResponseLimit(
            config.max_response_bytes, config.platform, varying_outputs(manifest.signature.outputs)
        ),
        hook_batcher=hook_batcher,
    )
    if manifest.pipeline is not None and model is not None:
        from inference.pipeline import PipelineService

        service.pipeline = PipelineService(
            package_dir,
            manifest,
            limits=service.limits,
            threads=config.compute_threads,
            max_queue=config.max_queue,
            axis_rules=getattr(model, "axis_rules", None),  # texts are truncated to the most tokens it takes
        )
    # With several workers the check runs here, on the main thread, so no compute thread exists
    # when the workers are forked (each warms its own with warm_up()).
    service.warm_up(on_compute_thread=config.workers == 1)
    if config.max_batch_size == "auto":
        service.tune_batching(on_compute_thread=config.workers == 1)
    return service


def _is_loaded_model(obj: object) -> bool:
    return hasattr(obj, "predict") and hasattr(obj, "signature")


def batching_settings(config: ServerConfig, manifest: Manifest) -> tuple[int, float]:
    """Environment beats the package's ``serving.*`` metadata beats the defaults."""
    try:
        # With `auto`, the package's (or the default) cap is the largest size the start-up sweep tries.
        size = (
            config.max_batch_size
            if isinstance(config.max_batch_size, int)
            else int(manifest.metadata.get("serving.max_batch_size", DEFAULT_MAX_BATCH_SIZE))
        )
        delay = (
            config.max_batch_delay_ms
            if config.max_batch_delay_ms is not None
            else float(manifest.metadata.get("serving.max_batch_delay_ms", DEFAULT_MAX_BATCH_DELAY_MS))
        )
    except ValueError as exc:
        raise ManifestError(f"manifest metadata serving.* must be numbers: {exc}") from None
    if size < 1 or delay < 0:
        raise LoadError(f"batching needs max_batch_size >= 1 and max_batch_delay_ms >= 0, got {size} and {delay}")
    return size, delay
