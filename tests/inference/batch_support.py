"""Helpers for the batch tests: run ``model-deploy-batch`` the way users do.

The command is imported up front, not when first called, so that what the tests put on sys.path
(a tests/ directory holds tests/infra and tests/inference) never shadows the packages it imports lazily.

A run the tests interrupt (Ctrl-C, SIGKILL, a dying worker) is started with :data:`SLOW_CALLS` in its
environment: each PyTorch model call of that process, and of its workers (a spawned worker imports
this module again, as ``__mp_main__``), sleeps that long first. The run is then still scoring long
after the test's kill point, however fast or busy the machine: on a VM with 40-60 % CPU steal, runs
of 12,000 and 16,000 records finished in 1.2-1.7 s, before the test's signal arrived.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

import numpy as np

import inference.batch.local  # noqa: F401
import infra.batch.cloud  # noqa: F401
from infra.batch.cli import main as cli_main

#: Seconds each model call sleeps first, in a run started with this variable (see the module docstring).
SLOW_CALLS = "BATCH_SUPPORT_SECONDS_PER_MODEL_CALL"
#: 0.05 s per call of 32 rows: 640 records/s per process, so a kill point of 1,000-2,000 records
#: comes after 1.6-3.1 s, and the rest of the run would take many seconds more.
SLOW_CALLS_ENV = {SLOW_CALLS: "0.05"}


def _slow_model_calls(seconds: float) -> None:
    from model_package.formats import _torch

    predict = _torch.TorchLoadedModel.predict

    def slowed(self: _torch.TorchLoadedModel, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        time.sleep(seconds)
        return predict(self, inputs)

    _torch.TorchLoadedModel.predict = slowed  # type: ignore[method-assign]


if os.environ.get(SLOW_CALLS):
    _slow_model_calls(float(os.environ[SLOW_CALLS]))


def main(argv: Sequence[str] | None = None) -> int:
    """``model-deploy-batch`` itself (``infra.batch.cli.main``)."""
    return cli_main(argv)


if __name__ == "__main__":
    # The runs the tests interrupt with SIGINT get Python's KeyboardInterrupt handler whoever started
    # the suite: a shell without job control starts a background command with SIGINT ignored (POSIX,
    # Shell Command Language, 2.11 "Signals and Error Handling"), children inherit that, and Python
    # then installs no handler: a suite started as `./dev.sh test &` saw its Ctrl-C tests' runs finish
    # with exit 0. (Not for the command itself: an ignored SIGINT is what a background job asks for.)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
