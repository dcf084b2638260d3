"""Serve a package's declared pipeline: raw items in, answers out, under the model's own admission rules.

Per request: the body is parsed into raw items (on the codec thread when large), preprocessed as
one batch (image decodes, tokenisation) on the pipeline's threads behind an :class:`AdmissionGate`
(bounded concurrency and queue: 503; the request's deadline: 504), then the tensors go through
``ModelService.predict`` like any other request (validation, ranges, the batcher, which merges
concurrent requests of the same shape), and the answers are built from the outputs. One deadline
covers all three steps. Errors follow the server's taxonomy: bad media is a 400 naming the item,
an image over the pixel cap a 413, a failure of ours a logged 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from inference.admission import AdmissionGate
from inference.codecs import DecodeLimits
from inference.errors import DeadlineExceededError
from inference.offload import OFF_LOOP_BYTES, Offloader
from inference.response_limits import ResponseLimit
from model_package.formats.axis_rules import AxisRules
from model_package.manifest import Manifest
from model_package.pipeline.runner import PipelineRunner, RawItem

#: Bytes per pixel of a decoded RGB image: what the pixel cap divides the decoded-bytes bound by.
_RGB_BYTES = 3
#: Answers built on the event loop at most: one answer costs ~8 us of Python (a 1 MB request of
#: 200,000 short texts took 1.5 s), so larger requests build theirs on a thread of their own.
INLINE_ANSWERS = 128


class PipelineService:
    """A loaded pipeline and the gate its preprocessing runs behind."""

    def __init__(
        self,
        package_dir: Path,
        manifest: Manifest,
        *,
        limits: DecodeLimits,
        threads: int,
        max_queue: int,
        axis_rules: AxisRules | None = None,
    ):
        # An image may decode to no more than a request may decode to: 4 x the body limit, in RGB bytes.
        self.runner = PipelineRunner(
            package_dir,
            manifest,
            max_pixels=limits.max_bytes // _RGB_BYTES,
            max_tensor_bytes=limits.max_bytes,
            axis_rules=axis_rules,
        )
        self.gate = AdmissionGate(concurrency=threads, max_queue=max_queue, name="pipeline")
        self._answers = Offloader()

    @property
    def kind(self) -> str:
        """What clients send: ``image``, ``text`` or ``ids``."""
        return self.runner.kind

    @property
    def id_depth(self) -> int:
        """How deep an instance of ids may nest lists: the model inputs' rank, less the batch axis."""
        return max(len(spec.shape) for spec in self.runner.signature.inputs) - 1

    async def start(self) -> None:
        """Bind the gate to the server's event loop."""
        await self.gate.start()

    async def stop(self, *, grace: float | None = None) -> None:
        """Finish running preprocessing and answer building (graceful shutdown; ``grace`` as ``ModelService.stop``)."""
        await self.gate.stop(grace=grace)
        self._answers.shutdown(wait=grace is None)

    def check_answer_fits(
        self, items: int, encode: Callable[[list[dict[str, Any]]], bytes], limit: ResponseLimit
    ) -> None:
        """A 413 before any preprocessing when the answer to ``items`` cannot fit the response limit.

        ``encode`` is the protocol's body for a list of answers; two of the smallest answers an item can
        have (``PipelineRunner.smallest_answer``) give what each item adds. 300,000 texts were tokenized
        and scored for 6 s before their answer was refused as too large.
        """
        if items < 2:
            return  # one item's answer is checked once built (over the limit, no smaller request exists)
        smallest = self.runner.smallest_answer()
        one = len(encode([smallest]))
        size = one + (len(encode([smallest, smallest])) - one) * (items - 1)
        if size > limit.max_bytes:
            raise limit.error(size, items, at_least=True)

    async def answer(self, items: Sequence[RawItem], predict: Any, *, timeout: float) -> list[dict[str, Any]]:
        """Preprocess ``items``, run them through ``predict`` (``ModelService.predict``), build the answers."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        inputs = await self.gate.run(lambda: self.runner.preprocess(items), timeout=timeout)
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise DeadlineExceededError(
                f"the request did not complete within its {timeout:g} s deadline (preprocessing took it all) "
                "and was dropped"
            )
        outputs = await predict(inputs, timeout=remaining, from_client=False)
        if len(items) <= INLINE_ANSWERS:
            # Activations and top-k over a few rows take microseconds: not worth a thread hop.
            return self.runner.postprocess(inputs, outputs)
        answers: list[dict[str, Any]] = await self._answers.run(
            OFF_LOOP_BYTES, lambda: self.runner.postprocess(inputs, outputs)
        )
        return answers


def answers_body(answers: list[dict[str, Any]]) -> bytes:
    """The JSON body every route answers a pipeline request with: ``{"predictions": [...]}``."""
    return orjson.dumps({"predictions": answers})
