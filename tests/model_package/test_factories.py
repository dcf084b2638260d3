"""``file.py:function`` and ``module:function`` factories: each file is its own module, and importing
one leaves ``sys.path`` as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from model_package.export import load_factory


def write_factory(path: Path, label: str, *, helper: bool = False) -> Path:
    """A factory file whose model is ``label`` (the model is not exported here, only returned)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    imports = "from factory_helpers import LABEL\n" if helper else f"LABEL = {label!r}\n"
    if helper:
        (path.parent / "factory_helpers.py").write_text(f"LABEL = {label!r}\n")
    path.write_text(imports + "\ndef make():\n    return LABEL, {'x': [[0.0, 1.0]]}\n")
    return path


def test_a_factory_file_named_like_a_standard_module_is_imported_itself(tmp_path: Path) -> None:
    # By its name, json.py was the standard library's json: "has no callable 'make'".
    factory = write_factory(tmp_path / "json.py", "mine")
    assert load_factory(f"{factory}:make").model == "mine"


def test_two_factory_files_of_one_name_are_two_modules(tmp_path: Path) -> None:
    # A notebook exporting two models: the second factory.py was the first one, already imported.
    first = write_factory(tmp_path / "a" / "factory.py", "first")
    second = write_factory(tmp_path / "b" / "factory.py", "second")
    assert load_factory(f"{first}:make").model == "first"
    assert load_factory(f"{second}:make").model == "second"


def test_a_factory_imports_its_own_helpers_and_leaves_sys_path_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left first on sys.path, the folder's inference.py (a SageMaker handler) shadowed this toolkit's
    # `inference` package when it was imported later (see test_cli's end-to-end case).
    factory = write_factory(tmp_path / "project" / "train.py", "helped", helper=True)
    before = list(sys.path)
    assert load_factory(f"{factory}:make").model == "helped"
    assert sys.path == before

    module = tmp_path / "work" / "my_models.py"
    write_factory(module, "by-name")
    monkeypatch.chdir(module.parent)
    assert load_factory("my_models:make").model == "by-name"
    assert sys.path == before


def test_a_factory_file_that_fails_to_import_names_what_is_missing(tmp_path: Path) -> None:
    factory = tmp_path / "broken.py"
    factory.write_text("import definitely_not_installed_dependency\n\ndef make():\n    pass\n")
    before = list(sys.path)
    with pytest.raises(Exception, match="definitely_not_installed_dependency"):
        load_factory(f"{factory}:make")
    assert sys.path == before
    assert not [name for name in sys.modules if name.startswith("_model_package_factory_broken")]
