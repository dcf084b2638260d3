"""The Python objects a ``.keras`` file needs besides Keras' own: custom layers, models, functions.

A ``.keras`` file is a config (``config.json`` in a zip) plus weights. Keras rebuilds each object
of the config from its ``module``, ``class_name`` and ``registered_name``: its own objects from
the ``keras`` modules, anything else only from its registry of custom objects, filled by
``@keras.saving.register_keras_serializable`` when the defining module is imported
(https://keras.io/guides/serialization_and_saving/#custom-objects). In safe mode it imports no
other module itself. So a model with a custom layer exports and reloads fine in the process that
defined the layer, and fails to load in the server's fresh process with a message about
``Functional`` that names neither the layer nor the fix. This module reads the names from the
config (no TensorFlow import) so the format can name them, and the builder can prove the package
loads in a fresh process.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The package's code entry point, named in the advice (the server imports it before the model loads).
_CODE = "code/inference.py"
#: Packages whose modules Keras imports itself when it meets them in a config
#: (``keras.src.saving.serialization_lib._retrieve_class_or_fn``): not custom, whether installed or not.
_IMPORTED_BY_KERAS = frozenset({"keras", "keras_hub", "keras_cv", "keras_nlp"})
#: Config keys Keras never rebuilds when loading a package (``load_model(compile=False)``): a custom
#: loss or metric there costs nothing at load time.
_NOT_LOADED = frozenset({"compile_config"})
#: Module prefix of factory files imported by path (``model_package.export``): the user knows the file, not this name.
_FACTORY_MODULE_PREFIX = "_model_package_factory_"


@dataclass(frozen=True)
class CustomObject:
    """One object of the config that Keras can rebuild only from its registry of custom objects."""

    name: str
    """The name Keras looks it up by: ``package>Name`` when registered, else the bare class name."""
    module: str | None
    """The Python module that defined it; ``None`` for functions (their config records only the name)
    and for what a script or notebook defined (Keras writes ``null`` for ``__main__``)."""

    @property
    def registered(self) -> bool:
        """Whether it was registered when saved (``@register_keras_serializable`` names carry a package)."""
        return ">" in self.name

    def describe(self) -> str:
        state = "" if self.registered else ", not registered"
        if self.module is None:
            return f"{self.name}{f' ({state[2:]})' if state else ''}"
        where = "the factory file" if self.module.startswith(_FACTORY_MODULE_PREFIX) else f"module {self.module}"
        return f"{self.name} (defined in {where}{state})"


def custom_objects(model_file: Path) -> tuple[CustomObject, ...]:
    """The custom objects ``model_file``'s config refers to, each once, in config order.

    An unreadable file gives none: loading it reports what is wrong with it.
    """
    try:
        with zipfile.ZipFile(model_file) as archive:
            config = json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return ()
    return tuple(dict.fromkeys(_walk(config)))


def _walk(node: Any) -> Iterator[CustomObject]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item)
        return
    if not isinstance(node, dict):
        return
    module, class_name = node.get("module", _ABSENT), node.get("class_name")
    if isinstance(class_name, str) and (module is None or isinstance(module, str)):
        if module == "builtins" and class_name == "function" and isinstance(node.get("config"), str):
            # A function of the user's (an activation, a loss): its config is its name, registered or not.
            # Keras' own functions are written with their public module (keras.activations).
            yield CustomObject(node["config"], None)
        elif _custom_module(module) and not class_name.startswith("__"):  # "__tensor__", "__numpy__": values
            registered = node.get("registered_name")
            yield CustomObject(registered if isinstance(registered, str) and registered else class_name, module)
    for key, value in node.items():
        if key not in _NOT_LOADED:
            yield from _walk(value)


_ABSENT = object()


def _custom_module(module: str | None) -> bool:
    """Whether an object of ``module`` (``None``: defined in ``__main__``) is one Keras cannot find itself."""
    return module is None or module.split(".", 1)[0] not in _IMPORTED_BY_KERAS


def advice(objects: tuple[CustomObject, ...]) -> str:
    """What a user does about ``objects`` so the server, a fresh process, can rebuild them."""
    unregistered = [o.name for o in objects if not o.registered]
    register = (
        f"decorate {', '.join(unregistered)} with @keras.saving.register_keras_serializable(), " if unregistered else ""
    )
    return (
        f"the server loads a package in a fresh process, where Keras knows only its own classes and those "
        f"that {_CODE} imports: {register}put the module that defines them in the package's code/ directory "
        f"(model-package export/import --code DIR) and import it from {_CODE}; or export with --format "
        "tf_savedmodel (the default for Keras models), whose traced graph needs no Python classes"
    )
