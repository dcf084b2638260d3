"""A package appears at ``--out`` whole, or not at all, and errors never name its staging directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_package.cli import main
from model_package.errors import UsageError
from model_package.export import export_model

torch_models = pytest.importorskip("tests.model_package.torch_models")

pytestmark = pytest.mark.torch


def _export(out: Path, **options: object) -> None:
    export_model(torch_models.make_mlp(), torch_models.mlp_inputs(2), out, name="mlp", version="1", **options)  # type: ignore[arg-type]


def _files(root: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p.relative_to(root)), p.read_bytes()) for p in root.rglob("*") if p.is_file())


def test_a_user_code_error_under_a_relative_out_names_the_packages_own_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a relative --out, the staging prefix was cut from the middle of an absolute path: the message
    named a real-looking, wrong file (the user's own code directory)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text("from pathlib import Path\nopen(Path(__file__).parent / 'vocab.txt').read()\n")
    (tmp_path / "fac.py").write_text(
        "from tests.model_package.torch_models import make_mlp, mlp_inputs\n\n"
        "def factory():\n    return make_mlp(), mlp_inputs(2)\n"
    )
    monkeypatch.chdir(tmp_path)

    status = main(["export", "fac.py:factory", "--name", "m", "--version", "1", "--out", "out/rel", "--code", "code"])

    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert status != 0
    assert "'code/vocab.txt'" in error, error
    assert ".partial-" not in error and str(code) not in error
    assert not (tmp_path / "out" / "rel").exists()


def test_out_naming_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("not a package")

    with pytest.raises(UsageError, match="exists and is not a directory"):
        _export(tmp_path / "taken")


def test_an_interrupted_overwrite_keeps_the_old_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The old package was deleted before the new one was moved in: Ctrl-C (or a failed delete) in between
    lost both, since the staging copy is removed on the way out."""
    out = tmp_path / "pkg"
    _export(out)
    before = _files(out)
    rename = Path.rename

    def interrupted(self: Path, target: Path) -> Path:
        if ".partial-" in self.name:
            raise KeyboardInterrupt
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", interrupted)

    with pytest.raises(KeyboardInterrupt):
        _export(out, overwrite=True)

    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg"]
