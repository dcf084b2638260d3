"""Keras models with custom layers: packaged so the server, a fresh process, can load them.

A ``.keras`` file names its custom layers; Keras rebuilds them only from classes registered in the
loading process. The layer here is registered by this test module, so every in-process check
passes; the server's fresh process knows it only when the package's ``code/inference.py`` imports
its definition. Before these tests, such a package exported and verified green, then failed at the
endpoint's start-up with a message about ``Functional``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from inference.config import load_config  # noqa: E402  (after the importorskip guard)
from inference.service import load_service  # noqa: E402
from model_package.errors import ExportError  # noqa: E402
from model_package.export import export_model  # noqa: E402
from model_package.formats.keras_objects import custom_objects  # noqa: E402

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


def test_export_refuses_a_custom_layer_the_server_could_not_load(tmp_path: Path) -> None:
    out = tmp_path / "scaled"

    with pytest.raises(ExportError) as raised:
        export_model(_model(Scale(3.0)), EXAMPLE, out, name="scaled", version="1", format="keras")

    message = str(raised.value)
    assert "would not load on the server" in message
    assert "tests_custom>Scale" in message
    assert "code/inference.py" in message and "tf_savedmodel" in message
    assert str(tmp_path) not in message  # not the staging directory, which is gone
    assert not out.exists()  # nothing half-written
    assert [p.name for p in tmp_path.iterdir()] == []


def _cli(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``model-package ARGS`` in a fresh interpreter (``-I``: no current directory, no PYTHONPATH)."""
    main = "import sys; from model_package.cli import main; sys.exit(main(sys.argv[1:]))"
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


def test_import_only_code_is_served_by_the_servers_own_batched_path(shipped: Path) -> None:
    service = load_service(load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=shipped))

    # No request hook: requests take the built-in path (batching, every protocol and body form), not
    # the toolkit's one-request-at-a-time default hooks.
    assert service.user_code is None
    assert service.batcher is not None


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


def test_loading_names_the_unknown_layer_and_the_fix(shipped: Path, tmp_path: Path) -> None:
    forgot = tmp_path / "forgot"
    shutil.copytree(shipped, forgot)
    (forgot / "code" / "inference.py").write_text("")  # as if the import were forgotten (integrity aside)

    loaded = subprocess.run(
        [sys.executable, "-I", "-m", "model_package.fresh_load", str(forgot)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert loaded.returncode == 1
    assert "objects Keras does not know in this process: tests_custom>Scale" in loaded.stderr
    assert "import it from code/inference.py" in loaded.stderr


def test_an_unregistered_layer_is_named_with_the_decorator_to_add(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as raised:
        export_model(_model(Unregistered()), EXAMPLE, tmp_path / "p", name="p", version="1", format="keras")

    message = str(raised.value)
    assert "Unregistered (defined in module tests.model_package.test_keras_custom_objects, not registered)" in message
    assert "decorate Unregistered with @keras.saving.register_keras_serializable()" in message
