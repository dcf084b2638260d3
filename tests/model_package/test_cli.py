"""The ``model-package`` console script, run as a user runs it: a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.torch
def test_export_pack_push_pull_verify_a_real_model(tmp_path: Path) -> None:
    """The whole journey a user takes, through the console script, with the digits example."""
    root = Path(__file__).resolve().parents[2]
    package = tmp_path / "digits"
    export = run(
        "export", "examples.digits.torch_model:factory", "--name", "digits", "--version", "1.0.0",
        "--out", str(package), "--json", cwd=root,
    )  # fmt: skip
    assert export.returncode == 0, export.stderr
    assert json.loads(export.stdout)["max_abs_error"] <= 1e-5

    packed = json.loads(run("pack", str(package), "--json").stdout)
    store = (tmp_path / "store").as_uri()
    first = run("push", packed["archive"], store, "--json")
    assert first.returncode == 0, first.stderr
    pushed = json.loads(first.stdout)
    assert pushed["uploaded"] is True
    assert pushed["uri"] == f"{store}/digits/{packed['digest']}/model.tar.gz"
    assert json.loads(run("push", str(package), store, "--json").stdout)["uploaded"] is False

    fetched = tmp_path / "fetched"
    pulled = run("pull", pushed["uri"], str(fetched))
    assert pulled.returncode == 0, pulled.stderr
    verified = run("verify", str(fetched), "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["behaviour"] == "ok"


def test_push_and_pull_through_s3(
    make_package: PackageFactory, s3_bucket: str, kms_key_arn: str, tmp_path: Path
) -> None:
    result = run("push", str(make_package()), f"s3://{s3_bucket}/models", "--kms-key-id", kms_key_arn, "--json")
    assert result.returncode == 0, result.stderr
    uri = json.loads(result.stdout)["uri"]
    assert uri.startswith(f"s3://{s3_bucket}/models/demo/") and uri.endswith("/model.tar.gz")
    pulled = run("pull", uri, str(tmp_path / "fetched"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "fetched" / "manifest.json").is_file()


def test_push_and_pull_through_gcs(make_package: PackageFactory, gcs_bucket: str, tmp_path: Path) -> None:
    result = run("push", str(make_package()), f"gs://{gcs_bucket}/models", "--layout", "uncompressed", "--json")
    assert result.returncode == 0, result.stderr
    uri = json.loads(result.stdout)["uri"]
    pulled = run("pull", uri, str(tmp_path / "fetched"))
    assert pulled.returncode == 0, pulled.stderr
    assert run("verify", str(tmp_path / "fetched"), "--integrity-only").returncode == 0


def test_store_failures_are_one_line_errors(
    make_package: PackageFactory,
    moto_server: str,
    isolated_cloud_env: None,
    closed_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    package = str(make_package())
    assert_one_line_error(run("push", package, "ftp://host/path"), 2, "supported")
    assert_one_line_error(run("pull", "s3://bucket/models/demo/not-a-digest/model.tar.gz", "out"), 2, "digest")

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    assert_one_line_error(run("push", package, "s3://some-bucket/models"), 9, "credentials")

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port}")
    assert_one_line_error(run("push", package, "s3://some-bucket/models"), 9, "127.0.0.1")


def test_a_factory_beside_its_sagemaker_handler_named_inference_py_exports(tmp_path: Path) -> None:
    """A project folder holding its SageMaker handler, ``inference.py``, and the factory: the folder
    stayed first on ``sys.path`` after the factory was imported, so verifying the code imported the
    handler as this toolkit's ``inference`` package: an internal error instead of a package."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "inference.py").write_text(
        "import numpy as np\n\n\ndef example():\n    return np.zeros((3, 4), dtype=np.float32)\n\n\n"
        "def predict_fn(data, model):\n    return model.predict(data)\n"
    )
    # The factory imports the handler too (the review's case: the handler then stood in for the
    # toolkit's `inference` package however the folder left sys.path).
    (project / "train.py").write_text(
        "import torch\nfrom inference import example\n\n\ndef make():\n"
        "    return torch.nn.Linear(4, 2), {'input': example()}\n"
    )
    result = run(
        "export", "train.py:make", "--name", "p", "--version", "1", "--out", str(tmp_path / "pkg"),
        "--code", str(project), "--json", cwd=project,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["user_code"] == "ok (example ran through predict_fn)"


@pytest.mark.torch
def test_a_package_that_fails_its_check_is_never_written_nor_replaces_the_old_one(tmp_path: Path) -> None:
    """The behaviour check ran after the package was moved into place: a failed export left a finished-looking
    directory (which `pack` packed), blocked the corrected run's --out, and with --overwrite had already
    deleted the good package it was meant to replace."""
    from model_package.example import load_arrays, save_arrays
    from model_package.export import export_model
    from tests.model_package import torch_models

    good = tmp_path / "good"
    export_model(torch_models.make_mlp(), torch_models.mlp_inputs(3), good, name="mlp", version="1")
    wrong = {name: array + 1.0 for name, array in load_arrays(good / "example" / "outputs.npz").items()}
    save_arrays(tmp_path / "wrong.npz", wrong)
    model_file = good / json.loads((good / "manifest.json").read_text())["model_path"]
    common = ["--name", "mlp", "--version", "2", "--example-inputs", str(good / "example" / "inputs.npz")]
    common += ["--expected-outputs", str(tmp_path / "wrong.npz")]

    fresh = run("import", str(model_file), *common, "--out", str(tmp_path / "new"))
    assert_one_line_error(fresh, 6, "differs from the bundled example")
    assert "package it with looser --rtol/--atol" in fresh.stderr  # what to do when the model is right
    assert not (tmp_path / "new").exists()
    assert "partial" not in fresh.stderr  # no staging directory named in the error
    target = tmp_path / "target"
    export_model(torch_models.make_mlp(), torch_models.mlp_inputs(3), target, name="mlp", version="1")
    before = sorted((p.relative_to(target), p.read_bytes()) for p in target.rglob("*") if p.is_file())

    replaced = run("import", str(model_file), *common, "--out", str(target), "--overwrite")

    assert_one_line_error(replaced, 6, "differs from the bundled example")
    assert sorted((p.relative_to(target), p.read_bytes()) for p in target.rglob("*") if p.is_file()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good", "target", "wrong.npz"]
