"""Prove that a package loads in a fresh Python process, as the server loads it.

Packaging checks a model by loading it back, in the process that exported it. For most formats
that is the same as the server's fresh process: a TorchScript, ExportedProgram, ONNX or SavedModel
file is self-contained. A ``.keras`` file is not: its custom layers and functions are rebuilt from
Python classes that the exporting process had imported (``model_package.formats.keras_objects``),
so a package can pass every in-process check and fail at the endpoint's start-up. For such a
package the builder loads it once more in a new interpreter (``python -I``: no current directory,
no ``PYTHONPATH``, no user site; this project's own code, then only installed packages and the
package's ``code/``), through the server's own loader (``code/inference.py`` first, then the
model), before the package exists. ``--no-verify`` skips it, as it skips the other checks (for
code whose imports only the serving image has).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import NoReturn

from model_package.errors import ExportError, ModelPackageError
from model_package.formats.keras_objects import custom_objects
from model_package.manifest import Manifest, read_manifest

#: The prefix of the child's one-line reason on stderr (frameworks print their own lines there too).
_REASON = "fresh-load-error: "
#: Importing TensorFlow and loading a model; a hang is reported, not waited for.
TIMEOUT_S = 300.0
#: The directory holding ``model_package`` and ``inference``: the child runs this very code, installed or not.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_CHILD = (
    "import sys; sys.path.insert(0, {root!r}); from model_package.fresh_load import run_child; run_child(sys.argv[1:])"
)


def python_objects_needed(package_dir: Path, manifest: Manifest) -> tuple[str, ...]:
    """The Python objects the package's model file needs besides its framework (only ``.keras`` files have any)."""
    if manifest.format != "keras":
        return ()
    return tuple(o.describe() for o in custom_objects(package_dir / manifest.model_path))


def check_loads_in_fresh_process(package_dir: Path, manifest: Manifest) -> None:
    """Raise :class:`ExportError` with the server's reason when the package would not load at start-up.

    Only packages whose model file needs Python objects are loaded again (a few seconds: the child
    imports the framework); the others load anywhere their framework does.
    """
    if not python_objects_needed(package_dir, manifest):
        return
    shown = str(package_dir.resolve())
    command = [sys.executable, "-I", "-c", _CHILD.format(root=str(_PROJECT_ROOT)), shown]
    # stderr to a file, not a pipe: a helper process the code starts (and keeps) would hold a pipe
    # open, and the wait for its end would last as long as the helper.
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=tempfile.gettempdir(), start_new_session=True
        )
        try:
            code = child.wait(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            # What the package's code started (threads end with the child; processes may not).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        stderr.seek(0)
        output = stderr.read().decode("utf-8", errors="replace")
    if code is None:
        raise ExportError(f"loading the package in a fresh Python process took over {TIMEOUT_S:g} s")
    if code == 0:
        return
    reasons = [line[len(_REASON) :] for line in output.splitlines() if line.startswith(_REASON)]
    reason = reasons[-1] if reasons else (output.strip().splitlines() or [f"exit status {code}"])[-1]
    # The package is still being staged: its directory means nothing to the user.
    reason = reason.replace(f"{shown}/", "").replace(shown, "the package")
    raise ExportError(f"the package would not load on the server (checked in a fresh Python process): {reason}")


def _load_as_the_server_does(package_dir: Path) -> None:
    manifest = read_manifest(package_dir)
    from model_package.formats import get_format

    def load_model() -> object:
        return get_format(manifest.format).load(package_dir, manifest)

    if manifest.code is None:
        load_model()
        return
    # The server's own loader: code/inference.py is imported (registering its objects) before the model loads.
    from inference.user_code import UserCodeHandler

    UserCodeHandler.load(package_dir, manifest, default_model=load_model)


def main(argv: list[str]) -> int:
    """Load the package at ``argv[0]``: 0, or 1 with the reason as the last marked stderr line."""
    try:
        _load_as_the_server_does(Path(argv[0]))
    except ModelPackageError as exc:
        print(f"{_REASON}{str(exc).replace(chr(10), ' ')}", file=sys.stderr)
        return 1
    return 0


def run_child(argv: list[str]) -> NoReturn:
    """The child's entry: :func:`main`, then exit at once (a thread the package's code started must not hold it)."""
    try:
        code = main(argv)
    except BaseException:  # an unexpected failure: its traceback is the reason (the last stderr line)
        traceback.print_exc()
        code = 1
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run_child(sys.argv[1:])
