"""Format ``keras``: a Keras 3 native model file ``model.keras``.

Packages are always loaded with ``safe_mode=True``: a ``.keras`` file is a
config plus weights, and safe mode refuses the one part of that config that
would run arbitrary code on load (Python lambdas serialized as bytecode, e.g.
in ``Lambda`` layers). Custom layers still load when their classes are
registered with ``keras.saving.register_keras_serializable`` in the serving
process (for instance from the package's ``code/inference.py``).

For prediction the loaded model is traced once into a TensorFlow concrete
function with a dynamic batch dimension, so calls never retrace and can run
concurrently. Inputs are named after the model's ``InputLayer`` names and
listed in the model's call order; outputs are named as in
:mod:`model_package.formats._tensorflow`, the same as for ``tf_savedmodel``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from model_package.dynamic_axes import DynamicAxes
from model_package.errors import ExportError, LoadError, MissingFileError, ModelPackageError, UsageError
from model_package.formats import _tensorflow as _tf
from model_package.formats.base import (
    NO_OPTIONS,
    ExportableFormat,
    ImportOptions,
    LoadedModel,
    SavedArtifact,
    Tensors,
    check_import_options,
    one_line_error,
    with_valid_ranges,
)
from model_package.formats.keras_objects import advice, custom_objects
from model_package.manifest import Manifest, Signature

#: The model file, relative to the package root.
MODEL_FILENAME = "model.keras"


class KerasFormat:
    """Save, import and load Keras 3 ``.keras`` files."""

    name = "keras"

    def save(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, *, dynamic_axes: DynamicAxes | None = None
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Save a live Keras 3 model with ``model.save`` to ``model.keras``.

        The file is loaded back exactly as a package is loaded (safe mode, not
        compiled), so a model that could not be served, for example one with a
        ``Lambda`` layer, fails here rather than at deployment.
        """
        keras = _tf.import_keras()
        if not isinstance(model, keras.Model):
            raise UsageError(f"the keras format saves Keras 3 models, got {type(model).__name__}")
        path = staging_dir / MODEL_FILENAME
        try:
            model.save(str(path))
        except ModelPackageError:
            raise
        except Exception as exc:  # Keras raises anything from user layers' get_config()
            raise ExportError(f"Keras could not save {type(model).__name__}: {one_line_error(exc)}") from exc
        try:
            signature, owner, function = _open(path)
        except LoadError as exc:
            raise ExportError(
                f"the saved model cannot be loaded back the way packages are loaded "
                f"(keras.saving.load_model(safe_mode=True, compile=False)): {exc}"
            ) from exc
        # The reloaded model lists its inputs in the live model's call order.
        call_order = [spec.name for spec in signature.inputs]
        _tf.check_example_names(call_order, example_inputs)
        _tf.check_declared_axes_are_none(signature.inputs, dynamic_axes or {})
        reference = _tf.run_keras_model(model, signature, example_inputs, call_order)
        _tf.check_reference_names(signature, reference)
        loaded = _tf.ConcreteFunctionModel(signature, function, positional=call_order, owner=owner)
        cap = _tf.check_batch_generalizes(model, signature, example_inputs, call_order, loaded, fmt=self.name)
        return SavedArtifact(MODEL_FILENAME, signature, _tf.framework(), max_batch_size=cap), reference

    def import_artifact(
        self, source: Path, staging_dir: Path, example_inputs: Tensors | None, options: ImportOptions = NO_OPTIONS
    ) -> SavedArtifact:
        """Copy a ``.keras`` file into ``staging_dir/model.keras``; the signature comes from the model's inputs/outputs.

        ``example_inputs`` is ignored: a ``.keras`` file records its inputs.
        """
        check_import_options(self.name, options)
        if not source.exists():
            raise MissingFileError(f"{source} does not exist")
        if not source.is_file() or source.suffix.lower() != ".keras":
            raise UsageError(
                f"{source} is not a .keras file; the keras format takes a Keras 3 native model file "
                "(model.save('model.keras')); legacy HDF5 (.h5) files are not supported"
            )
        signature, _, _ = _open(source)
        shutil.copyfile(source, staging_dir / MODEL_FILENAME)
        return SavedArtifact(model_path=MODEL_FILENAME, signature=signature, framework=_tf.framework())

    def load(self, package_dir: Path, manifest: Manifest, *, threads: int | None = None) -> LoadedModel:
        """Load ``model_path`` in safe mode and trace it once for prediction."""
        _tf.configure_threads(threads)
        path = package_dir / manifest.model_path
        if not path.is_file():
            raise LoadError(f"{path} does not exist; the package's Keras model file is missing")
        signature, model, function = _open(path)
        _tf.check_manifest_signature(path, manifest.signature, signature)
        return _tf.ConcreteFunctionModel(
            manifest.signature, function, positional=[spec.name for spec in signature.inputs], owner=model
        )


def _open(path: Path) -> tuple[Signature, Any, Any]:
    """Load ``path`` in safe mode and trace it: its package signature, the Keras model and the concrete function."""
    keras = _tf.import_keras()
    try:
        model = keras.saving.load_model(str(path), safe_mode=True, compile=False)
    except Exception as exc:  # corrupt zips, unknown classes and safe-mode refusals all arrive here
        unknown = [o for o in custom_objects(path) if keras.saving.get_registered_object(o.name) is None]
        if unknown:
            # Keras' own message is about the enclosing Functional model and names neither these nor the fix.
            raise LoadError(
                f"cannot load the Keras model {path}: it uses objects Keras does not know in this process: "
                f"{', '.join(o.describe() for o in unknown)}; {advice(tuple(unknown))}"
            ) from exc
        # Keras' refusal of a Lambda layer advises safe_mode=False, which packages never use.
        lambda_hint = (
            ". Safe mode is not optional: a package never runs code from its model file as it loads. The "
            "tf_savedmodel format (the default for Keras models) saves the traced graph, Lambda layers included"
            if "safe_mode=False" in str(exc)
            else ""
        )
        raise LoadError(f"cannot load the Keras model {path}: {one_line_error(exc)}{lambda_hint}") from exc
    try:
        function = _trace(model)
        signature = _tf.signature_of(function)
        ranges = _tf.keras_embedding_ranges(model)
        signature = signature.model_copy(update={"inputs": with_valid_ranges(signature.inputs, ranges)})
    except ModelPackageError:
        raise
    except Exception as exc:
        raise LoadError(f"cannot prepare the Keras model {path} for prediction: {one_line_error(exc)}") from exc
    return signature, model, function


def _trace(model: Any) -> Any:
    """Trace ``model`` once into a concrete function: positional inputs in call order, a dict of named outputs.

    Calling the Keras model itself per batch would run it eagerly (slow) or,
    through ``predict``/``predict_on_batch``, through a ``tf.function`` that may
    retrace for new batch sizes; a concrete function with ``None`` batch
    dimensions does neither and is safe to call from several threads.
    """
    tf = _tf.import_tensorflow()
    tensors = _tf.keras_input_tensors(model)
    specs = [
        tf.TensorSpec(_tf.batch_dynamic(tensor.shape), tensor.dtype, name=_tf.keras_input_name(tensor))
        for tensor in tensors
    ]

    def serve(*flat: Any) -> dict[str, Any]:
        return _tf.name_outputs(model(_tf.keras_call_structure(model, flat), training=False))

    # autograph=False as in Keras' own SavedModel export and predict step: Keras 3
    # layers express control flow with keras.ops, and autograph would only try
    # (noisily) to rewrite our Python helpers.
    return tf.function(serve, input_signature=specs, autograph=False).get_concrete_function()


#: The object :func:`model_package.formats.get_format` returns for ``keras``.
FORMAT: ExportableFormat = KerasFormat()
