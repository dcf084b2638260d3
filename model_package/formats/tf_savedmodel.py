"""Format ``tf_savedmodel``: a TensorFlow SavedModel directory ``model.savedmodel/``.

The package runs the SavedModel's ``serving_default`` signature, the same
entry point TensorFlow Serving and Vertex AI's prebuilt TF containers use, or
the one chosen at import (``--signature``, recorded as the manifest's
``serving_signature``). Its
inputs are keyword arguments, so the package signature lists them in sorted
name order (TensorFlow's own flat order); the outputs are the signature's dict
keys. Live Keras 3 models are written with ``model.export(format="tf_saved_model")``;
see :mod:`model_package.formats._tensorflow` for how inputs and outputs are named.
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
from model_package.manifest import Framework, Manifest, Signature

#: The directory the SavedModel lives in, relative to the package root.
MODEL_DIRNAME = "model.savedmodel"

#: The signature a package runs; it is what ``model.export`` and TF Serving use by default.
SERVING_SIGNATURE = "serving_default"

_PROTO_FILENAME = "saved_model.pb"


class TFSavedModelFormat:
    """Save, import and load TensorFlow SavedModels through their ``serving_default`` signature."""

    name = "tf_savedmodel"

    def save(
        self, model: Any, example_inputs: Tensors, staging_dir: Path, *, dynamic_axes: DynamicAxes | None = None
    ) -> tuple[SavedArtifact, dict[str, np.ndarray]]:
        """Export a live Keras 3 model with ``model.export(format="tf_saved_model")`` into ``model.savedmodel/``.

        The exported signature always has a dynamic batch dimension, even for
        models built with a fixed ``batch_size``. The example inputs must be
        named after the model's ``keras.Input`` layers.
        """
        keras = _tf.import_keras()
        if not isinstance(model, keras.Model):
            raise UsageError(
                f"the tf_savedmodel format exports Keras 3 models, got {type(model).__name__}; "
                "to package an existing SavedModel directory, import it instead"
            )
        axes = dynamic_axes or {}
        input_signature, call_order = _tf.export_input_signature(model, example_inputs, axes)
        _tf.check_example_names(call_order, example_inputs)
        path = staging_dir / MODEL_DIRNAME
        try:
            model.export(str(path), format="tf_saved_model", input_signature=input_signature, verbose=False)
        except ModelPackageError:
            raise
        except Exception as exc:  # Keras and TF raise anything while tracing user layers
            raise ExportError(
                f"Keras could not export {type(model).__name__} as a TensorFlow SavedModel: {one_line_error(exc)}"
            ) from exc
        try:
            signature, _, _ = _open(path)
        except LoadError as exc:
            raise ExportError(f"the exported SavedModel cannot be loaded back: {exc}") from exc
        fixed = [spec.name for spec in signature.inputs if spec.shape and spec.shape[0] != -1]
        if fixed:
            raise ExportError(f"the exported SavedModel has a fixed batch dimension on inputs {fixed}; expected -1")
        ranges = _tf.keras_embedding_ranges(model)
        signature = signature.model_copy(update={"inputs": with_valid_ranges(signature.inputs, ranges)})
        reference = _tf.run_keras_model(model, signature, example_inputs, call_order)
        _tf.check_reference_names(signature, reference)
        _, owner, function = _open(path)
        loaded = _tf.ConcreteFunctionModel(signature, function, positional=None, owner=owner)
        cap = _tf.check_batch_generalizes(model, signature, example_inputs, call_order, loaded, fmt=self.name)
        if axes:
            _tf.check_axes_generalize(model, signature, example_inputs, call_order, loaded, axes=axes, fmt=self.name)
        artifact = SavedArtifact(MODEL_DIRNAME, signature, _tf.framework(), max_batch_size=cap)
        return artifact, reference

    def import_artifact(
        self, source: Path, staging_dir: Path, example_inputs: Tensors | None, options: ImportOptions = NO_OPTIONS
    ) -> SavedArtifact:
        """Copy a SavedModel directory into ``staging_dir/model.savedmodel`` and read its serving signature.

        ``example_inputs`` is ignored: a SavedModel records its signature.
        """
        check_import_options(self.name, options, signature=True)
        if not source.exists():
            raise MissingFileError(f"{source} does not exist")
        if not source.is_dir():
            raise UsageError(
                f"{source} is a file; a TensorFlow SavedModel is a directory containing {_PROTO_FILENAME} "
                "and variables/"
            )
        if not (source / _PROTO_FILENAME).is_file():
            raise UsageError(
                f"{source} is not a TensorFlow SavedModel: {_PROTO_FILENAME} is missing "
                f"(found {sorted(p.name for p in source.iterdir()) or 'an empty directory'})"
            )
        key = options.signature or SERVING_SIGNATURE
        signature, _, _ = _open(source, key)
        framework = _saved_with(source) or _tf.framework()
        shutil.copytree(source, staging_dir / MODEL_DIRNAME)
        chosen = None if key == SERVING_SIGNATURE else key
        return SavedArtifact(
            model_path=MODEL_DIRNAME, signature=signature, framework=framework, serving_signature=chosen
        )

    def load(self, package_dir: Path, manifest: Manifest, *, threads: int | None = None) -> LoadedModel:
        """Load ``model_path`` with ``tf.saved_model.load`` and serve its ``serving_default`` signature."""
        _tf.configure_threads(threads)
        path = package_dir / manifest.model_path
        if not (path / _PROTO_FILENAME).is_file():
            raise LoadError(f"{path} is not a TensorFlow SavedModel directory: {_PROTO_FILENAME} is missing")
        signature, loaded, function = _open(path, manifest.serving_signature or SERVING_SIGNATURE)
        _tf.check_manifest_signature(path, manifest.signature, signature)
        return _tf.ConcreteFunctionModel(manifest.signature, function, positional=None, owner=loaded)


def _open(path: Path, key: str = SERVING_SIGNATURE) -> tuple[Signature, Any, Any]:
    """Load the SavedModel at ``path``: its package signature, the loaded object and the function ``key``."""
    tf = _tf.import_tensorflow()
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # corrupt protos and variables surface as many different TF and protobuf errors
        raise LoadError(f"cannot load the TensorFlow SavedModel {path}: {one_line_error(exc)}") from exc
    signatures = getattr(loaded, "signatures", None) or {}
    if key not in signatures:
        if not signatures:
            advice = (
                "export it with model.export(path, format='tf_saved_model') or pass "
                "signatures={'serving_default': ...} to tf.saved_model.save"
            )
        else:
            advice = f"choose one with --signature ({', '.join(sorted(signatures))})"
        raise LoadError(f"{path} has no {key!r} signature (it has {sorted(signatures) or 'no signatures'}); {advice}")
    function = signatures[key]
    try:
        signature = _tf.signature_of(function)
    except ValueError as exc:
        raise LoadError(f"{path}: the {key!r} signature cannot be described in a package manifest: {exc}") from exc
    return signature, loaded, function


def _saved_with(path: Path) -> Framework | None:
    """The TensorFlow version recorded in ``saved_model.pb`` (it may differ from the installed one), if any."""
    _tf.import_tensorflow()
    try:
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((path / _PROTO_FILENAME).read_bytes())
        version = str(proto.meta_graphs[0].meta_info_def.tensorflow_version)
    except Exception:  # the proto loaded in _open, so this is only a missing field: use the installed version
        return None
    return Framework(name="tensorflow", version=version) if version else None


#: The object :func:`model_package.formats.get_format` returns for ``tf_savedmodel``.
FORMAT: ExportableFormat = TFSavedModelFormat()
