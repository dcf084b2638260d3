"""``file.py:function`` and ``module:function`` factories: each file is its own module, and importing
one leaves ``sys.path`` as it was."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from model_package.errors import ModelPackageError, UsageError
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


def test_a_factory_imports_its_own_helpers_and_its_folder_ends_up_last_on_sys_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Left first on sys.path, the folder's inference.py (a SageMaker handler) shadowed this toolkit's
    # `inference` package when it was imported later (see test_cli's end-to-end case).
    monkeypatch.setattr(sys, "path", list(sys.path))
    factory = write_factory(tmp_path / "project" / "train.py", "helped", helper=True)
    before = list(sys.path)
    assert load_factory(f"{factory}:make").model == "helped"
    assert sys.path == [*before, str(factory.parent)]

    module = tmp_path / "work" / "my_models.py"
    write_factory(module, "by-name")
    monkeypatch.chdir(module.parent)
    assert load_factory("my_models:make").model == "by-name"
    assert sys.path == [*before, str(factory.parent), str(module.parent)]


def test_a_model_may_import_a_module_beside_its_factory_when_it_first_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A forward() importing a sibling module runs during export, after the factory has returned:
    # the folder was taken off sys.path and the export failed with "No module named ..." (review).
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "late_helper.py").write_text("def act(x):\n    return x * 2\n")
    factory = tmp_path / "lazy.py"
    factory.write_text(
        "class Model:\n    def forward(self, x):\n        import late_helper\n\n        return late_helper.act(x)\n\n\n"
        "def make():\n    return Model(), {'x': [[1.0]]}\n"
    )
    model = load_factory(f"{factory}:make").model
    assert model.forward(3) == 6  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("def make(:\n", ("SyntaxError",)),
        ("raise RuntimeError('boom at import')\n", ("RuntimeError", "boom at import")),
    ],
    ids=["syntax error", "raises"],
)
def test_a_factory_file_that_fails_at_import_is_the_users_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, words: tuple[str, ...]
) -> None:
    # Both were the CLI's "internal error" (exit 70), as if the toolkit had failed.
    monkeypatch.setattr(sys, "path", list(sys.path))
    factory = tmp_path / "failing.py"
    factory.write_text(source)
    with pytest.raises(ModelPackageError) as caught:
        load_factory(f"{factory}:make")
    assert "failing.py failed to import" in str(caught.value)
    for word in words:
        assert word in str(caught.value)


def test_a_factory_file_that_fails_to_import_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    factory = tmp_path / "broken.py"
    factory.write_text("import definitely_not_installed_dependency\n\ndef make():\n    pass\n")
    before = list(sys.path)
    with pytest.raises(UsageError, match="definitely_not_installed_dependency"):
        load_factory(f"{factory}:make")
    assert sys.path[: len(before)] == before
    assert not [name for name in sys.modules if name.startswith("_model_package_factory_broken")]
