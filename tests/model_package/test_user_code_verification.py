"""A green export/import --code and verify mean the user code will load and answer, as the server runs it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

pytestmark = pytest.mark.torch

from tests.model_package.conftest import CliOutcome, CliRunner  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "inference" / "user_code_fixtures"


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


@pytest.fixture
def export(model_package_cli: CliRunner) -> CliRunner:
    def run(factory: str, code: Path, out: Path, *extra: str) -> CliOutcome:
        return model_package_cli(
            "export", factory, "--name", "demo", "--version", "1", "-o", out, "--code", code, *extra, cwd=out.parent
        )

    return run


def test_code_importing_a_missing_module_fails_export_and_verify(
    factory: str, tmp_path: Path, model_package_cli: CliRunner, export: CliRunner
) -> None:
    missing = "No module named 'definitely_not_installed_dependency'"
    result = export(factory, FIXTURES / "missing_dependency", tmp_path / "pkg")
    assert result.returncode == 7
    assert missing in result.stderr.strip().splitlines()[-1]

    result = export(factory, FIXTURES / "missing_dependency", tmp_path / "unverified", "--no-verify")
    assert result.returncode == 0, result.stderr
    result = model_package_cli("verify", tmp_path / "unverified", cwd=tmp_path)
    assert result.returncode == 7
    assert missing in result.stderr

    archive = tmp_path / "unverified.tar.gz"
    assert model_package_cli("pack", tmp_path / "unverified", "-o", archive, cwd=tmp_path).returncode == 0
    result = model_package_cli("verify", archive, cwd=tmp_path)
    assert result.returncode == 7
    line = result.stderr.strip().splitlines()[-1]
    assert missing in line
    assert f"{archive}:code/inference.py" in line
    assert "model-package-verify-" not in line  # never the temporary directory it was unpacked into


def test_code_whose_hooks_fail_on_the_example_fails_verify(factory: str, tmp_path: Path, export: CliRunner) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (code / "inference.py").write_text(
        "def predict_fn(data, model):\n    return model.predict({'wrong_name': data['x']})\n"
    )
    result = export(factory, code, tmp_path / "pkg")
    assert result.returncode == 7
    line = result.stderr.strip().splitlines()[-1]
    assert "code/inference.py fails on the package's bundled example (the server would answer 500)" in line
    assert "predict_fn" in line


def test_working_code_is_run_on_the_example(
    factory: str, tmp_path: Path, model_package_cli: CliRunner, export: CliRunner
) -> None:
    result = export(factory, FIXTURES / "predict_only", tmp_path / "pkg", "--json")
    assert result.returncode == 0, result.stderr
    assert '"user_code": "ok (example ran through predict_fn)"' in result.stdout
    result = model_package_cli("verify", tmp_path / "pkg", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "user_code: ok (example ran through predict_fn)" in result.stdout
