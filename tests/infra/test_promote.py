"""infra.promote against real stack files in tmp_path and real packages in the loopback S3 and GCS servers."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import infra.promote
from infra.config.loader import load_stack_file
from infra.promote import main, rewrite_package_block
from model_package.builder import hash_tree
from model_package.example import save_arrays
from model_package.manifest import (
    SCHEMA_VERSION,
    Creation,
    Example,
    Framework,
    Manifest,
    Signature,
    TensorSpec,
    write_manifest,
)
from model_package.publish import push

AWS_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/model-serve@sha256:" + "4f" * 32
GCP_IMAGE = "europe-west4-docker.pkg.dev/acme-ml/model-serve/serve@sha256:" + "4f" * 32
OLD_DIGEST = "3d439c53e4a5064705658451522f7ce98c13fe10fcc57ac5b88761c5fd0eab58"
OTHER_DIGEST = "ab" * 32

AWS_ENDPOINTS = {
    "dev": """\
    endpoint:
      name: demo-dev
      variants:
        - name: primary
          instanceType: ml.m5.large
          initialInstanceCount: 1
""",
    "staging": """\
    endpoint:
      name: demo-staging
      variants:
        - name: primary   # one instance is enough before prod
          instanceType: ml.m5.large
      autoscaling:
        minInstances: 1
        maxInstances: 3
        targetConcurrentRequestsPerModel: 4
""",
    "prod": """\
    endpoint:
      name: demo-prod
      variants:
        - name: primary
          instanceType: ml.c6i.xlarge
          initialInstanceCount: 2
      deployment:
        strategy: canary
        canaryPercent: 10
        waitIntervalSeconds: 600
        terminationWaitSeconds: 300
        maximumExecutionTimeoutSeconds: 3600
      autoscaling:
        minInstances: 2
        maxInstances: 8
        targetInvocationsPerInstance: 700
      alarms:
        modelLatencyP99Ms: 250
        errorRate5xxPercent: 0.5
    logRetentionDays: 365
""",
}


def aws_stack(environment: str, bucket: str, digest: str, *, version: str = "0.9.0", prefix: str = "models") -> str:
    return f"""\
# The {environment} stack.   Comments  and odd   spacing must survive promotion.
config:
  aws:region: us-east-1   # where the endpoint runs
  model-deploy:environment: {environment}
  model-deploy:cloud: aws
  model-deploy:gitRevision: "0000000"
  model-deploy:package:
    # pinned by promotion; do not edit by hand
    name: demo
    version: '{version}'
    uri: s3://{bucket}/{prefix}/demo/{digest}/model.tar.gz
    digest: {digest}   # sha256 of model.tar.gz
    image: {AWS_IMAGE}
  model-deploy:aws:
    store:
      create: true
      bucketName: {bucket}
      repositoryName: model-serve
{AWS_ENDPOINTS[environment]}
# trailing comment
"""


def gcp_stack(environment: str, bucket: str, digest: str) -> str:
    return f"""\
# GCP {environment}
config:
  gcp:project: acme-ml
  gcp:region: europe-west4
  model-deploy:environment: {environment}
  model-deploy:cloud: gcp
  model-deploy:package:
    name: demo
    version: 0.9.0
    uri: gs://{bucket}/models/demo/{digest}/model.tar.gz
    digest: {digest}
    # the image, by digest
    image: {GCP_IMAGE}
  model-deploy:gcp:
    project: acme-ml
    region: europe-west4
    target: cloudrun
    store:
      bucketName: {bucket}   # {environment}'s own bucket
      repository:
        name: model-serve
    cloudRun:
      serviceName: demo-{environment}
      minInstances: {1 if environment != "dev" else 0}
      maxInstances: 3
      invokers:
        - group:ml-platform@example.com
"""


def make_package(root: Path) -> Path:
    """A small valid package named demo (opaque weights: promotion never loads the model)."""
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (root / "model.onnx").write_bytes(rng.standard_normal(2_000).astype(np.float32).tobytes())
    save_arrays(root / "example" / "inputs.npz", {"x": np.ones((2, 3), np.float32)})
    save_arrays(root / "example" / "outputs.npz", {"y": np.ones((2, 1), np.float32)})
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
        name="demo",
        version="1.0.0",
        format="onnx",
        framework=Framework(name="onnx", version="1.17.0"),
        model_path="model.onnx",
        signature=Signature(
            inputs=(TensorSpec(name="x", dtype="float32", shape=(-1, 3)),),
            outputs=(TensorSpec(name="y", dtype="float32", shape=(-1, 1)),),
        ),
        example=Example(),
        files=hash_tree(root),
        created=Creation(created_at="2026-01-01T00:00:00+00:00", tool="tests", python="3.11"),
    )
    write_manifest(root, manifest)
    return root


def outside_package_block(text: str) -> list[str]:
    """The lines that are not values of the package block's keys."""
    keys = ("    version:", "    uri:", "    digest:", "    image:", "    name: demo")
    return [line for line in text.splitlines(keepends=True) if not line.startswith(keys)]


@pytest.fixture
def aws_pair(tmp_path: Path, s3_client: Any) -> dict[str, Any]:
    """A dev stack pinning a package pushed to the dev bucket, a staging stack with its own bucket."""
    run_id = uuid.uuid4().hex[:12]
    dev_bucket, staging_bucket = f"promote-{run_id}-dev", f"promote-{run_id}-stg"
    for bucket in (dev_bucket, staging_bucket):
        s3_client.create_bucket(Bucket=bucket)
    published = push(make_package(tmp_path / "pkg"), f"s3://{dev_bucket}/models")
    root = tmp_path / "stacks"
    root.mkdir()
    (root / "Pulumi.dev.yaml").write_text(aws_stack("dev", dev_bucket, published.digest, version="1.0.0"))
    (root / "Pulumi.staging.yaml").write_text(aws_stack("staging", staging_bucket, OLD_DIGEST))
    (root / "Pulumi.prod.yaml").write_text(aws_stack("prod", staging_bucket, OLD_DIGEST))
    return {"root": root, "digest": published.digest, "dev": dev_bucket, "staging": staging_bucket}


def run(root: Path, *args: str) -> int:
    return main(["--root", str(root), *args])


def test_stack_templates_are_valid(aws_pair: dict[str, Any]) -> None:
    for name in ("dev", "staging", "prod"):
        assert load_stack_file(aws_pair["root"] / f"Pulumi.{name}.yaml").environment == name


def test_promotes_dev_to_staging_copying_across_buckets(
    aws_pair: dict[str, Any], s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, digest = aws_pair["root"], aws_pair["digest"]
    staging = root / "Pulumi.staging.yaml"
    before = staging.read_text()

    assert run(root, "--from", "dev", "--to", "staging") == 0

    out = capsys.readouterr().out
    key = f"models/demo/{digest}/model.tar.gz"
    body = s3_client.get_object(Bucket=aws_pair["staging"], Key=key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == digest
    s3_client.head_object(Bucket=aws_pair["staging"], Key=f"models/demo/{digest}/manifest.json")
    after = staging.read_text()
    config = load_stack_file(staging)
    assert config.package.digest == digest
    assert config.package.uri == f"s3://{aws_pair['staging']}/{key}"
    assert config.package.version == "1.0.0"
    # Everything outside the package values is byte-identical, comments included.
    assert outside_package_block(after) == outside_package_block(before)
    assert "    version: '1.0.0'\n" in after
    assert f"    digest: {digest}   # sha256 of model.tar.gz\n" in after
    assert out.startswith("--- a/Pulumi.staging.yaml\n+++ b/Pulumi.staging.yaml\n")
    assert f"+    digest: {digest}   # sha256 of model.tar.gz" in out
    assert f"-    digest: {OLD_DIGEST}" in out


def test_second_promotion_uploads_nothing_and_changes_nothing(
    aws_pair: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = aws_pair["root"]
    assert run(root, "--from", "dev", "--to", "staging") == 0
    promoted = (root / "Pulumi.staging.yaml").read_text()
    capsys.readouterr()

    def no_push(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing should be uploaded")

    monkeypatch.setattr(infra.promote, "push", no_push)
    assert run(root, "--from", "dev", "--to", "staging") == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "nothing to change" in captured.err
    assert (root / "Pulumi.staging.yaml").read_text() == promoted


def test_dry_run_writes_and_copies_nothing(
    aws_pair: dict[str, Any], s3_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root = aws_pair["root"]
    before = {path.name: path.read_bytes() for path in root.iterdir()}
    assert run(root, "--from", "dev", "--to", "staging", "--dry-run") == 0
    captured = capsys.readouterr()
    assert f"+    digest: {aws_pair['digest']}" in captured.out
    assert "dry run" in captured.err
    assert {path.name: path.read_bytes() for path in root.iterdir()} == before
    assert s3_client.list_objects_v2(Bucket=aws_pair["staging"]).get("KeyCount", 0) == 0


def test_staging_to_prod_in_the_same_bucket(aws_pair: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root, digest = aws_pair["root"], aws_pair["digest"]
    assert run(root, "--from", "dev", "--to", "staging") == 0
    assert run(root, "--from", "staging", "--to", "prod", "--digest", digest) == 0
    assert load_stack_file(root / "Pulumi.prod.yaml").package.digest == digest
    assert "+    digest:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "staging", "--to", "prod", "--digest", OTHER_DIGEST), "staging stack 'staging' is pinned to"),
        (("--from", "dev", "--to", "prod"), "refusing to promote dev (dev) -> prod (prod)"),
        (("--from", "staging", "--to", "dev"), "dev is the first environment"),
        (("--from", "dev", "--to", "qa"), "unknown stack 'qa'"),
        (("--from", "dev", "--to", "staging", "--digest", "sha256:1234"), "is not a package digest"),
        (("--from", "dev", "--to", "dev"), "both name stack 'dev'"),
    ],
    ids=["prod-digest-not-in-staging", "dev-to-prod", "backwards", "unknown-stack", "malformed-digest", "same"],
)
def test_refusals(
    aws_pair: dict[str, Any], capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    root = aws_pair["root"]
    before = {path.name: path.read_bytes() for path in root.iterdir()}
    assert run(root, *args) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert captured.out == ""
    assert {path.name: path.read_bytes() for path in root.iterdir()} == before


def test_malformed_digest_in_the_source_stack_is_refused(
    aws_pair: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = aws_pair["root"]
    dev = root / "Pulumi.dev.yaml"
    dev.write_text(dev.read_text().replace(f"digest: {aws_pair['digest']}", "digest: DEADBEEF"))
    assert run(root, "--from", "dev", "--to", "staging") == 2
    err = capsys.readouterr().err
    assert "is not a package digest" in err and err.count("\n") == 1


def test_missing_source_package_is_an_error(aws_pair: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = aws_pair["root"]
    dev = root / "Pulumi.dev.yaml"
    dev.write_text(dev.read_text().replace(aws_pair["digest"], OTHER_DIGEST))
    assert run(root, "--from", "dev", "--to", "staging") != 0
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("model-deploy-promote: error:") and "Traceback" not in err
    assert load_stack_file(root / "Pulumi.staging.yaml").package.digest == OLD_DIGEST


def test_gcp_pair_copies_between_gcs_buckets(
    tmp_path: Path, gcs_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dev_bucket, staging_bucket = "promote-dev-models", "promote-staging-models"
    for bucket in (dev_bucket, staging_bucket):
        if gcs_client.lookup_bucket(bucket) is None:
            gcs_client.create_bucket(bucket)
    published = push(make_package(tmp_path / "pkg"), f"gs://{dev_bucket}/models")
    root = tmp_path / "stacks"
    root.mkdir()
    (root / "Pulumi.gcp-dev.yaml").write_text(gcp_stack("dev", dev_bucket, published.digest))
    staging = root / "Pulumi.gcp-staging.yaml"
    staging.write_text(gcp_stack("staging", staging_bucket, OLD_DIGEST))
    before = staging.read_text()

    assert run(root, "--from", "gcp-dev", "--to", "gcp-staging") == 0

    blob = gcs_client.bucket(staging_bucket).get_blob(f"models/demo/{published.digest}/model.tar.gz")
    assert hashlib.sha256(blob.download_as_bytes()).hexdigest() == published.digest
    config = load_stack_file(staging)
    assert config.package.uri == f"gs://{staging_bucket}/models/demo/{published.digest}/model.tar.gz"
    assert outside_package_block(staging.read_text()) == outside_package_block(before)
    assert "+    uri: gs://" in capsys.readouterr().out


def test_rewrite_keeps_quoting_and_quotes_what_yaml_would_retype() -> None:
    text = 'config:\n  model-deploy:package: # pinned\n    name: a\n    version: "1.0"\n    uri: u\n    digest: d\n'
    new = rewrite_package_block(text, {"name": "a", "version": "1.10", "uri": "u2", "digest": "d"})
    assert (
        new
        == 'config:\n  model-deploy:package: # pinned\n    name: a\n    version: "1.10"\n    uri: u2\n    digest: d\n'
    )
    plain = rewrite_package_block(text.replace('"1.0"', "x"), {"version": "1.10"})
    assert '    version: "1.10"\n' in plain
