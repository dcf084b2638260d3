"""The ``model-package`` console script, run as a user runs it: a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from model_package.hashing import sha256_file
from tests.model_package.conftest import PackageFactory

CLI = str(Path(sys.executable).with_name("model-package"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, fragment: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("model-package: error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0]


def test_help_lists_the_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("export", "import", "pack", "verify", "inspect", "push", "pull"):
        assert command in result.stdout


def test_pack_prints_the_digest_of_the_archive(make_package: PackageFactory, tmp_path: Path) -> None:
    package = make_package()
    archive = tmp_path / "model.tar.gz"
    result = run("pack", str(package), "--out", str(archive), "--json")
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout)
    assert payload["digest"] == sha256_file(archive)
    assert payload["size"] == archive.stat().st_size
    again = run("pack", str(package), "--out", str(tmp_path / "again.tar.gz"), "--json")
    assert json.loads(again.stdout)["digest"] == payload["digest"]


def test_inspect_reads_the_manifest_inside_an_archive(make_package: PackageFactory, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    assert run("pack", str(make_package()), "--out", str(archive)).returncode == 0
    result = run("inspect", str(archive), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == "demo"


def test_tampered_package_fails_verify_with_one_line(make_package: PackageFactory) -> None:
    package = make_package()
    (package / "model.onnx").write_bytes(b"tampered")
    assert_one_line_error(run("verify", str(package), "--integrity-only"), 5, "model.onnx: size is")


def test_wrong_digest_fails_verify(make_package: PackageFactory, tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    run("pack", str(make_package()), "--out", str(archive))
    result = run("verify", str(archive), "--digest", "f" * 64, "--integrity-only")
    assert_one_line_error(result, 5, "but " + "f" * 64 + " was expected")


def test_corrupted_archive_fails_with_one_line(tmp_path: Path) -> None:
    archive = tmp_path / "model.tar.gz"
    archive.write_bytes(b"\x1f\x8b\x08\x00garbage" * 10)
    assert_one_line_error(run("verify", str(archive)), 5, "not a valid gzip-compressed tar archive")


def test_schema_mismatch_fails_with_one_line(make_package: PackageFactory) -> None:
    package = make_package()
    raw = json.loads((package / "manifest.json").read_text())
    raw["schema_version"] = "9.0"
    (package / "manifest.json").write_text(json.dumps(raw))
    assert_one_line_error(run("verify", str(package)), 3, "schema_version 9.0 is not supported")


def test_missing_file_and_unknown_format(tmp_path: Path) -> None:
    assert_one_line_error(run("verify", str(tmp_path / "nope")), 4, "does not exist")
    artifact = tmp_path / "model.xyz"
    artifact.write_bytes(b"?")
    result = run("import", str(artifact), "--name", "x", "--version", "1", "--out", str(tmp_path / "pkg"))
    assert_one_line_error(result, 2, "supported artifacts")
    assert not (tmp_path / "pkg").exists()


def test_bad_factory_is_a_usage_error(tmp_path: Path) -> None:
    result = run("export", "no_such_module:factory", "--name", "x", "--version", "1", "--out", str(tmp_path / "p"))
    assert_one_line_error(result, 2, "cannot import factory module 'no_such_module'")
