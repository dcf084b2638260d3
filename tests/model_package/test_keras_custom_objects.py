"""Keras models with custom layers: packaged so the server, a fresh process, can load them.

A ``.keras`` file names its custom layers; Keras rebuilds them only from classes registered in the
loading process. The layer here is registered by this test module, so every in-process check
passes; the server's fresh process knows it only when the package's ``code/inference.py`` imports
its definition. Before these tests, such a package exported and verified green, then failed at the
endpoint's start-up with a message about ``Functional``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from model_package.errors import ExportError  # noqa: E402
from model_package.export import export_model, import_artifact  # noqa: E402
from model_package.formats.keras_objects import advice, custom_objects  # noqa: E402

pytestmark = pytest.mark.tensorflow

# The layer's source, run here (registering it in this process) and shipped as code/layers.py.
LAYER_SOURCE = textwrap.dedent(
    """
    import keras

    @keras.saving.register_keras_serializable(package="tests_custom")
    class Scale(keras.layers.Layer):
        def __init__(self, factor=2.0, **kwargs):
            super().__init__(**kwargs)
            self.factor = factor

        def call(self, x):
            return x * self.factor

        def get_config(self):
            return {**super().get_config(), "factor": self.factor}
    """
)
_namespace: dict[str, Any] = {}
exec(compile(LAYER_SOURCE, "<test layer>", "exec"), _namespace)  # the same source as code/layers.py
Scale = _namespace["Scale"]


class Unregistered(keras.layers.Layer):  # type: ignore[misc]  # keras is untyped
    def call(self, x: Any) -> Any:
        return x + 1.0


@keras.saving.register_keras_serializable(package="tests_custom")
def doubled(x: Any) -> Any:
    return x * 2.0


EXAMPLE = {"x": np.arange(8, dtype=np.float32).reshape(2, 4)}
REPO = Path(__file__).resolve().parents[2]


def _model(layer: Any) -> Any:
    inputs = keras.Input((4,), name="x")
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(layer(inputs)))


def _code_importing_the_layer(root: Path) -> Path:
    code = root / "code"
    code.mkdir()
    (code / "layers.py").write_text(LAYER_SOURCE)
    (code / "inference.py").write_text("import layers  # noqa: F401  registers tests_custom>Scale\n")
    return code


def test_the_config_names_custom_layers_and_functions_not_keras_own(tmp_path: Path) -> None:
    inputs = keras.Input((4,), name="x")
    hidden = keras.layers.Dense(4, activation=doubled)(Scale(3.0)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="relu")(Unregistered()(hidden)))
    model.save(tmp_path / "m.keras")

    found = custom_objects(tmp_path / "m.keras")

    assert [o.name for o in found] == ["tests_custom>Scale", "tests_custom>doubled", "Unregistered"]
    assert [o.registered for o in found] == [True, True, False]
    assert custom_objects(tmp_path / "missing.keras") == ()


def test_objects_of_a_script_or_notebook_are_found_and_compile_only_and_kerass_own_are_not(tmp_path: Path) -> None:
    """Keras writes ``"module": null`` for what ``__main__`` defined: the commonest place for a custom layer."""
    config = {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "registered_name": "Functional",
        "config": {
            "layers": [
                {"module": None, "class_name": "Gate", "registered_name": "notebook>Gate", "config": {}},
                {"module": None, "class_name": "Plain", "registered_name": "Plain", "config": {}},
                {"module": "keras_hub.src.layers", "class_name": "Tokens", "registered_name": "keras_hub>Tokens"},
                {"module": None, "class_name": "__numpy__", "config": {"value": [1.0]}},
                {"module": "builtins", "class_name": "function", "config": "tripled", "registered_name": "function"},
                {"module": "keras.activations", "class_name": "function", "config": "relu", "registered_name": "relu"},
            ]
        },
        # Packages load with compile=False: a custom loss there is never rebuilt.
        "compile_config": {"loss": {"module": "train", "class_name": "Focal", "registered_name": "train>Focal"}},
    }
    with zipfile.ZipFile(tmp_path / "m.keras", "w") as archive:
        archive.writestr("config.json", json.dumps(config))

    found = custom_objects(tmp_path / "m.keras")

    assert [(o.name, o.module) for o in found] == [("notebook>Gate", None), ("Plain", None), ("tripled", None)]
    assert [o.describe() for o in found] == ["notebook>Gate", "Plain (not registered)", "tripled (not registered)"]
    assert "decorate Plain, tripled with @keras.saving.register_keras_serializable()" in advice(found)


def test_export_refuses_a_custom_layer_the_server_could_not_load(tmp_path: Path) -> None:
    out = tmp_path / "a  b" / "scaled"  # two spaces: the message must still hide the staging directory

    with pytest.raises(ExportError) as raised:
        export_model(_model(Scale(3.0)), EXAMPLE, out, name="scaled", version="1", format="keras")

    message = str(raised.value)
    assert "would not load on the server" in message
    assert "tests_custom>Scale" in message
    assert "code/inference.py" in message and "tf_savedmodel" in message
    assert str(tmp_path) not in message  # not the staging directory, which is gone
    assert not out.exists()  # nothing half-written
    assert [p.name for p in out.parent.iterdir()] == []


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``model-package ARGS`` in a fresh interpreter (``-I``: no current directory, no PYTHONPATH)."""
    main = f"import sys; sys.path.insert(0, {str(REPO)!r}); from model_package.cli import main; sys.exit(main(sys.argv[1:]))"  # noqa: E501
    return subprocess.run(
        [sys.executable, "-I", "-c", main, *args], capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A package of a model with the custom layer, whose code/ imports the layer's definition.

    Exporting it proves that it loads in a fresh process (the builder's check passed).
    """
    root = tmp_path_factory.mktemp("shipped")
    out = root / "scaled"
    code = _code_importing_the_layer(root)
    export_model(_model(Scale(3.0)), EXAMPLE, out, name="scaled", version="1", format="keras", code_dir=code)
    return out


def test_verify_in_a_fresh_process_imports_the_code_before_the_model(shipped: Path) -> None:
    verified = _cli(["verify", str(shipped)])

    assert verified.returncode == 0, verified.stderr[-2000:]
    assert "behaviour: ok" in verified.stdout


def test_import_of_a_keras_file_with_its_layer_in_code(tmp_path: Path) -> None:
    source = tmp_path / "saved.keras"
    _model(Scale(2.0)).save(source)
    code = _code_importing_the_layer(tmp_path)

    # A fresh `model-package import`, where only the package's code defines the layer (as on the server).
    out = tmp_path / "imported"
    imported = _cli(
        ["import", str(source), "--name", "imported", "--version", "1", "--code", str(code), "-o", str(out)]
    )

    assert imported.returncode == 0, imported.stderr[-2000:]
    assert "format: keras" in imported.stdout


def test_an_unregistered_layer_is_named_with_the_decorator_to_add(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as raised:
        export_model(_model(Unregistered()), EXAMPLE, tmp_path / "p", name="p", version="1", format="keras")

    message = str(raised.value)
    assert "Unregistered (defined in module tests.model_package.test_keras_custom_objects, not registered)" in message
    assert "decorate Unregistered with @keras.saving.register_keras_serializable()" in message


def test_import_of_a_plain_keras_file_does_not_import_code_that_only_the_serving_image_can(tmp_path: Path) -> None:
    """`--no-verify` is the documented escape for code whose imports only the serving image has."""
    source = tmp_path / "plain.keras"
    _model(keras.layers.Identity()).save(source)
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text("import only_in_the_serving_image  # noqa: F401\n")

    manifest = import_artifact(source, tmp_path / "p", name="p", version="1", code_dir=code, verify=False)

    assert manifest.code is not None


def test_the_check_neither_waits_for_nor_leaves_behind_what_the_code_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Code that starts a thread or a helper process (a metrics pusher) at import, and writes bytes to stderr."""
    monkeypatch.setattr("model_package.fresh_load.TIMEOUT_S", 90.0)
    code = _code_importing_the_layer(tmp_path)
    helper_pid = tmp_path / "helper.pid"
    (code / "inference.py").write_text(
        textwrap.dedent(
            f"""
            import subprocess, sys, threading, time
            import layers  # noqa: F401
            threading.Thread(target=time.sleep, args=(600,)).start()
            helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            open({str(helper_pid)!r}, "w").write(str(helper.pid))
            sys.stderr.buffer.write(b"\\xff not UTF-8\\n")
            """
        )
    )
    start = time.monotonic()

    export_model(_model(Scale(3.0)), EXAMPLE, tmp_path / "p", name="p", version="1", format="keras", code_dir=code)

    assert time.monotonic() - start < 60
    pid = int(helper_pid.read_text())
    deadline = time.monotonic() + 5  # a killed process is gone (or a zombie) a moment after the signal
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running(pid)


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False
