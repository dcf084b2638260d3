"""Run SageMaker inference-toolkit user code (``code/inference.py``) unchanged.

A package may ship the hooks that the SageMaker inference toolkits call
(``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn`` or ``transform_fn``,
plus the optional ``pre_model_fn`` and ``model_warmup_fn``), helper modules
beside them in ``code/`` and a ``code/requirements.txt``. This module imports
that code once, loads the model through it and runs one request through it,
following the toolkit's calling conventions so existing scripts work as they are:

* ``model_fn(model_dir)`` loads the model; without it the package's own model
  is loaded (``default_model``).
* ``transform_fn(model, input_data, content_type, accept)`` handles a whole
  request; it cannot be combined with the other three request hooks. Without
  it, ``input_fn(input_data, content_type)`` -> ``predict_fn(data, model)`` ->
  ``output_fn(prediction, accept)`` run in turn, with a default for each
  missing hook.
* Every hook may take one extra trailing ``context`` parameter; whether to pass
  it is decided by the number of positional parameters, as the toolkit does.
  The context is a :class:`RequestContext`, which also answers the TorchServe
  ``Context`` calls that toolkit scripts use (``get_request_header(0, name)``,
  ``set_response_header(0, name, value)``, ``system_properties``).
* Bodies of ``application/json`` and ``text/csv`` requests reach the user's
  hooks as ``str``, all others as ``bytes``.
* An ``Accept`` that is missing or ``*/*`` becomes the default accept
  (``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT`` in the toolkit, passed in here).
* ``output_fn`` / ``transform_fn`` may return bytes, a str (sent as UTF-8), a
  ``(body, content_type)`` tuple, a one-element list of those (the model
  server's batch convention), or any JSON-serialisable value (sent as
  ``application/json``).

Batching: a package may define ``predict_batch_fn(inputs, model[, contexts])``
instead of ``predict_fn``: it gets the ``input_fn`` results of several concurrent
requests as a list and returns one prediction per input, in order. The server
then runs the hooks through its adaptive batcher (the same queue bound, deadline
and readiness as the built-in path); ``input_fn`` and ``output_fn`` still run per
request, so a bad body fails only its own request, and when the batch call
raises, its requests are re-run one by one so only the failing one fails.

Errors: an :class:`inference.errors.ApiError` raised by user code reaches the
client unchanged, so scripts can answer 4xx themselves: ``raise BadInput("...")``
(:class:`inference.user_code.BadInput`) from any hook is a 400 with that
message; so does the toolkit's own ``BaseInferenceToolkitError`` (its
``status_code`` is kept). Exceptions that mean the input was bad are 4xx too
(:func:`inference.user_code.errors.input_problem`): a ``ValueError`` or a
Pillow decoding ``OSError`` from ``input_fn``, and Pillow's
``UnidentifiedImageError`` (400) or ``DecompressionBombError`` (413) from any
hook. Any other exception becomes a :class:`~inference.errors.ModelError` (500)
naming the hook and the exception type, with the exception chained: the server
logs the traceback with the request id, never sends it to the client.

Thread safety: :meth:`UserCodeHandler.invoke` runs in the server's worker
threads, possibly several at once, and holds no lock around user code (a lock
would serialise every request behind the slowest one). User code must therefore
be thread-safe, or the server must run a single worker thread. Each request
gets its own :class:`RequestContext`, so contexts are never shared.
"""

from inference.user_code.context import CUSTOM_ATTRIBUTES_HEADER, RequestContext
from inference.user_code.errors import BadInput
from inference.user_code.importing import import_user_code
from inference.user_code.invocation import HookRequest, UserCodeHandler
from inference.user_code.requirements import install_requirements
from inference.user_code.verification import verify_user_code

__all__ = [
    "CUSTOM_ATTRIBUTES_HEADER",
    "BadInput",
    "HookRequest",
    "RequestContext",
    "UserCodeHandler",
    "import_user_code",
    "install_requirements",
    "verify_user_code",
]
