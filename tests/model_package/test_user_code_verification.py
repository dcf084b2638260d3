"""A green export/import --code and verify mean the user code will load and answer, as the server runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "inference" / "user_code_fixtures"


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "model_package.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.fixture
def factory(tmp_path: Path) -> str:
    path = tmp_path / "factory.py"
    path.write_text(
        textwrap.dedent(
            """
            from tests.model_package.torch_models import dict_head_inputs, make_dict_head

            def make():
                return make_dict_head(), dict_head_inputs(3)
            """
        )
    )
    return f"{path}:make"


def _export(factory: str, code: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        "export", factory, "--name", "demo", "--version", "1", "-o", out, "--code", code, *extra, cwd=out.parent
    )


def test_code_importing_a_missing_module_fails_export_and_verify(factory: str, tmp_path: Path) -> None:
    missing = "No module named 'definitely_not_installed_dependency'"
    result = _export(factory, FIXTURES / "missing_dependency", tmp_path / "pkg")
    assert result.returncode == 7
    assert missing in result.stderr.strip().splitlines()[-1]

    result = _export(factory, FIXTURES / "missing_dependency", tmp_path / "unverified", "--no-verify")
    assert result.returncode == 0, result.stderr
    result = _cli("verify", tmp_path / "unverified", cwd=tmp_path)
    assert result.returncode == 7
    assert missing in result.stderr

    archive = tmp_path / "unverified.tar.gz"
    assert _cli("pack", tmp_path / "unverified", "-o", archive, cwd=tmp_path).returncode == 0
    result = _cli("verify", archive, cwd=tmp_path)
    assert result.returncode == 7
    line = result.stderr.strip().splitlines()[-1]
    assert missing in line
    assert f"{archive}:code/inference.py" in line
    assert "model-package-verify-" not in line  # never the temporary directory it was unpacked into


def test_code_whose_hooks_fail_on_the_example_fails_verify(factory: str, tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(
        "def predict_fn(data, model):\n    return model.predict({'wrong_name': data['x']})\n"
    )
    result = _export(factory, code, tmp_path / "pkg")
    assert result.returncode == 7
    line = result.stderr.strip().splitlines()[-1]
    assert "code/inference.py fails on the package's bundled example (the server would answer 500)" in line
    assert "predict_fn" in line


def test_working_code_is_run_on_the_example(factory: str, tmp_path: Path) -> None:
    result = _export(factory, FIXTURES / "predict_only", tmp_path / "pkg", "--json")
    assert result.returncode == 0, result.stderr
    assert '"user_code": "ok (example ran through predict_fn)"' in result.stdout
    result = _cli("verify", tmp_path / "pkg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "user_code: ok (example ran through predict_fn)" in result.stdout
