"""infra.promote against real stack files in tmp_path, real packages in the loopback S3 and GCS servers,
images in moto's ECR and in a loopback Artifact Registry (:mod:`tests.infra.fake_artifact_registry`)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import infra.promote
from infra.config.loader import load_stack_file
from infra.config.package_settings import parse_image
from infra.promote import main, rewrite_package_block
from infra.registry import docker_image_name
from model_package.publish import push
from tests.infra.fake_artifact_registry import FakeArtifactRegistry
from tests.opaque_package import make_opaque_package

# The serving image as the image workflow pushes it to dev: a manifest, addressed by its sha256.
IMAGE_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
    }
)
IMAGE_DIGEST = "sha256:" + hashlib.sha256(IMAGE_MANIFEST.encode()).hexdigest()
ECR_REGISTRY = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
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
        maximumExecutionTimeoutSeconds: 2700
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


def aws_stack(
    environment: str,
    bucket: str,
    digest: str,
    *,
    repository: str,
    version: str = "0.9.0",
    prefix: str = "models",
    image_digest: str = "sha256:" + "1f" * 32,
) -> str:
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
    image: {ECR_REGISTRY}/{repository}@{image_digest}
  model-deploy:aws:
    store:
      create: true
      bucketName: {bucket}
      repositoryName: {repository}
{AWS_ENDPOINTS[environment]}
# trailing comment
"""


def gcp_stack(environment: str, bucket: str, digest: str, *, image_digest: str = "sha256:" + "1f" * 32) -> str:
    project = f"acme-ml-{environment}"
    return f"""\
# GCP {environment}
config:
  gcp:project: {project}
  gcp:region: europe-west4
  model-deploy:environment: {environment}
  model-deploy:cloud: gcp
  model-deploy:package:
    name: demo
    version: 0.9.0
    uri: gs://{bucket}/models/demo/{digest}/model.tar.gz
    digest: {digest}
    # the image, by digest
    image: europe-west4-docker.pkg.dev/{project}/model-serve/serve@{image_digest}
  model-deploy:gcp:
    project: {project}
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
    return make_opaque_package(root, weight_values=2_000)


def outside_package_block(text: str) -> list[str]:
    """The lines that are not values of the package block's keys."""
    keys = ("    version:", "    uri:", "    digest:", "    image:", "    name: demo")
    return [line for line in text.splitlines(keepends=True) if not line.startswith(keys)]


@pytest.fixture
def ecr_client(aws_env: str) -> Any:
    """A plain boto3 ECR client on moto."""
    import boto3

    return boto3.client("ecr", region_name="us-east-1")


def ecr_push(ecr_client: Any, repository: str, *tags: str) -> None:
    """Put the serving image into ``repository`` (as ``docker push`` or ``crane copy`` would), by digest."""
    extra = {"imageTag": tags[0]} if tags else {}
    ecr_client.put_image(repositoryName=repository, imageManifest=IMAGE_MANIFEST, imageDigest=IMAGE_DIGEST, **extra)


@pytest.fixture
def aws_pair(tmp_path: Path, s3_client: Any, ecr_client: Any) -> dict[str, Any]:
    """Dev, staging and prod stacks, each with its own ECR repository holding the serving image.

    Dev pins a package pushed to the dev bucket and the image by digest; staging has its own
    bucket, prod shares staging's bucket.
    """
    run_id = uuid.uuid4().hex[:12]
    dev_bucket, staging_bucket = f"promote-{run_id}-dev", f"promote-{run_id}-stg"
    for bucket in (dev_bucket, staging_bucket):
        s3_client.create_bucket(Bucket=bucket)
    repositories = {env: f"promote-{run_id}-{env}" for env in ("dev", "staging", "prod")}
    for repository in repositories.values():
        ecr_client.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE")
        ecr_push(ecr_client, repository, "git-0123456")
    published = push(make_package(tmp_path / "pkg"), f"s3://{dev_bucket}/models")
    root = tmp_path / "stacks"
    root.mkdir()
    (root / "Pulumi.dev.yaml").write_text(
        aws_stack(
            "dev",
            dev_bucket,
            published.digest,
            version="1.0.0",
            repository=repositories["dev"],
            image_digest=IMAGE_DIGEST,
        )
    )
    (root / "Pulumi.staging.yaml").write_text(
        aws_stack("staging", staging_bucket, OLD_DIGEST, repository=repositories["staging"])
    )
    (root / "Pulumi.prod.yaml").write_text(
        aws_stack("prod", staging_bucket, OLD_DIGEST, repository=repositories["prod"])
    )
    return {
        "root": root,
        "digest": published.digest,
        "dev": dev_bucket,
        "staging": staging_bucket,
        "repositories": {env: f"{ECR_REGISTRY}/{name}" for env, name in repositories.items()},
        "repository_names": repositories,
    }


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
    # The image digest moved, into staging's own repository, not dev's.
    assert config.package.image == f"{aws_pair['repositories']['staging']}@{IMAGE_DIGEST}"
    assert f"+    image: {aws_pair['repositories']['staging']}@{IMAGE_DIGEST}" in out


@pytest.mark.parametrize("dry_run", [False, True], ids=["promote", "dry-run"])
def test_image_missing_from_the_target_repository_is_refused_before_anything_is_copied(
    aws_pair: dict[str, Any],
    s3_client: Any,
    ecr_client: Any,
    capsys: pytest.CaptureFixture[str],
    dry_run: bool,
) -> None:
    root, repositories = aws_pair["root"], aws_pair["repositories"]
    ecr_client.batch_delete_image(
        repositoryName=aws_pair["repository_names"]["staging"], imageIds=[{"imageDigest": IMAGE_DIGEST}]
    )
    before = {path.name: path.read_bytes() for path in root.iterdir()}

    assert run(root, "--from", "dev", "--to", "staging", *(["--dry-run"] if dry_run else [])) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("model-deploy-promote: error: ")
    assert f"image {IMAGE_DIGEST} is not in {repositories['staging']}" in line
    assert (
        f"`crane copy {repositories['dev']}@{IMAGE_DIGEST} {repositories['staging']}:sha256-{IMAGE_DIGEST[7:]}`" in line
    )
    assert {path.name: path.read_bytes() for path in root.iterdir()} == before
    assert s3_client.list_objects_v2(Bucket=aws_pair["staging"]).get("KeyCount", 0) == 0


def test_target_image_repository_overrides_the_targets_current_one(
    aws_pair: dict[str, Any], s3_client: Any, ecr_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, name = aws_pair["root"], aws_pair["repository_names"]["staging"]
    moved = f"{name}/moved"
    ecr_client.create_repository(repositoryName=moved)
    ecr_push(ecr_client, moved, "git-0123456")
    staging = root / "Pulumi.staging.yaml"
    pinned = staging.read_text()

    # repositoryName says where staging's endpoint may pull from: an image elsewhere is refused,
    # before the package is copied.
    args = ("--from", "dev", "--to", "staging", "--target-image-repository", f"{ECR_REGISTRY}/{moved}/")
    assert run(root, *args) == 2
    assert "repositoryName" in capsys.readouterr().err
    assert staging.read_text() == pinned
    assert s3_client.list_objects_v2(Bucket=aws_pair["staging"]).get("KeyCount", 0) == 0

    # Without it, the repository is the image's: the override moves staging to the new repository.
    staging.write_text(pinned.replace(f"      repositoryName: {name}\n", ""))
    assert run(root, *args) == 0
    assert load_stack_file(staging).package.image == f"{ECR_REGISTRY}/{moved}@{IMAGE_DIGEST}"


@pytest.mark.parametrize(
    "value",
    [f"{ECR_REGISTRY}/repo:v1", f"{ECR_REGISTRY}/repo@{IMAGE_DIGEST}", "model-serve", f"{ECR_REGISTRY}/Bad Repo"],
    ids=["tag", "digest", "no-registry", "malformed"],
)
def test_target_image_repository_must_be_a_repository(
    aws_pair: dict[str, Any], capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert run(aws_pair["root"], "--from", "dev", "--to", "staging", "--target-image-repository", value) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--target-image-repository" in err and "is not a repository" in err


def test_untagged_image_in_the_target_is_promoted_with_a_warning(
    aws_pair: dict[str, Any], ecr_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    root, name = aws_pair["root"], aws_pair["repository_names"]["staging"]
    ecr_client.batch_delete_image(repositoryName=name, imageIds=[{"imageDigest": IMAGE_DIGEST}])
    ecr_push(ecr_client, name)  # copied by digest only

    assert run(root, "--from", "dev", "--to", "staging") == 0

    err = capsys.readouterr().err
    assert "warning:" in err and "has no tag" in err and f"crane tag {aws_pair['repositories']['staging']}@" in err
    assert load_stack_file(root / "Pulumi.staging.yaml").package.image.endswith(IMAGE_DIGEST)


def test_unreachable_registry_fails_in_one_line_writing_nothing(
    aws_pair: dict[str, Any], monkeypatch: pytest.MonkeyPatch, closed_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    root = aws_pair["root"]
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", f"http://127.0.0.1:{closed_port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    before = {path.name: path.read_bytes() for path in root.iterdir()}

    assert run(root, "--from", "dev", "--to", "staging") == 1

    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot check {aws_pair['repositories']['staging']}" in err and "nothing was promoted" in err
    assert {path.name: path.read_bytes() for path in root.iterdir()} == before


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


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "promote"])
def test_a_source_package_that_fails_its_digest_fails_the_dry_run_like_the_real_run(
    aws_pair: dict[str, Any], s3_client: Any, capsys: pytest.CaptureFixture[str], dry_run: bool
) -> None:
    # The bytes in dev's store no longer hash to the digest dev pins (overwritten, corrupted).
    root, digest = aws_pair["root"], aws_pair["digest"]
    s3_client.put_object(Bucket=aws_pair["dev"], Key=f"models/demo/{digest}/model.tar.gz", Body=b"not the package")
    before = {path.name: path.read_bytes() for path in root.iterdir()}
    assert run(root, "--from", "dev", "--to", "staging", *(["--dry-run"] if dry_run else [])) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("model-deploy-promote: error: ")
    assert digest in error and "corrupted" in error
    assert {path.name: path.read_bytes() for path in root.iterdir()} == before
    assert s3_client.list_objects_v2(Bucket=aws_pair["staging"]).get("KeyCount", 0) == 0


def test_promotion_across_clouds_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.aws-staging.yaml").write_text(aws_stack("staging", "b-stg", OLD_DIGEST, repository="serve"))
    (tmp_path / "Pulumi.gcp-prod.yaml").write_text(gcp_stack("prod", "g-prod", OTHER_DIGEST))
    before = (tmp_path / "Pulumi.gcp-prod.yaml").read_text()
    assert run(tmp_path, "--from", "aws-staging", "--to", "gcp-prod") == 2
    err = capsys.readouterr().err
    assert "refusing to promote aws-staging (aws) -> gcp-prod (gcp): promotion stays within one cloud" in err
    assert (tmp_path / "Pulumi.gcp-prod.yaml").read_text() == before


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


@pytest.fixture(scope="module")
def artifact_registry() -> Iterator[FakeArtifactRegistry]:
    fake = FakeArtifactRegistry().start()
    try:
        yield fake
    finally:
        fake.stop()


def ar_image(environment: str) -> str:
    """The serving image in ``environment``'s own Artifact Registry repository (gcp_stack's projects)."""
    return f"europe-west4-docker.pkg.dev/acme-ml-{environment}/model-serve/serve@{IMAGE_DIGEST}"


@pytest.fixture
def gcp_pair(tmp_path: Path, gcs_client: Any, artifact_registry: FakeArtifactRegistry) -> dict[str, Any]:
    """GCP dev and staging stacks, each with its own bucket and project; the image is in dev's repository."""
    run_id = uuid.uuid4().hex[:8]
    dev_bucket, staging_bucket = f"promote-{run_id}-dev-models", f"promote-{run_id}-staging-models"
    for bucket in (dev_bucket, staging_bucket):
        gcs_client.create_bucket(bucket)
    artifact_registry.add_image(docker_image_name(parse_image(ar_image("dev"))), "git-0123456")
    published = push(make_package(tmp_path / "pkg"), f"gs://{dev_bucket}/models")
    root = tmp_path / "stacks"
    root.mkdir()
    (root / "Pulumi.gcp-dev.yaml").write_text(gcp_stack("dev", dev_bucket, published.digest, image_digest=IMAGE_DIGEST))
    (root / "Pulumi.gcp-staging.yaml").write_text(gcp_stack("staging", staging_bucket, OLD_DIGEST))
    return {"root": root, "digest": published.digest, "staging": staging_bucket}


def run_gcp(root: Path, registry: FakeArtifactRegistry, *args: str) -> int:
    return run(
        root, "--artifact-registry-endpoint", registry.address, "--from", "gcp-dev", "--to", "gcp-staging", *args
    )


def test_gcp_pair_copies_between_gcs_buckets(
    gcp_pair: dict[str, Any],
    gcs_client: Any,
    artifact_registry: FakeArtifactRegistry,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root, digest, staging_bucket = gcp_pair["root"], gcp_pair["digest"], gcp_pair["staging"]
    artifact_registry.add_image(docker_image_name(parse_image(ar_image("staging"))), f"sha256-{IMAGE_DIGEST[7:]}")
    staging = root / "Pulumi.gcp-staging.yaml"
    before = staging.read_text()

    assert run_gcp(root, artifact_registry) == 0

    blob = gcs_client.bucket(staging_bucket).get_blob(f"models/demo/{digest}/model.tar.gz")
    assert hashlib.sha256(blob.download_as_bytes()).hexdigest() == digest
    config = load_stack_file(staging)
    assert config.package.uri == f"gs://{staging_bucket}/models/demo/{digest}/model.tar.gz"
    # The digest moved; the repository stayed staging's own (its service may pull from nothing else).
    assert config.package.image == ar_image("staging")
    assert outside_package_block(staging.read_text()) == outside_package_block(before)
    out = capsys.readouterr().out
    assert "+    uri: gs://" in out
    assert f"+    image: {ar_image('staging')}" in out
    assert artifact_registry.requested[-1] == (
        f"projects/acme-ml-staging/locations/europe-west4/repositories/model-serve/dockerImages/serve@{IMAGE_DIGEST}"
    )


def test_gcp_image_missing_from_the_target_project_is_refused(
    gcp_pair: dict[str, Any], artifact_registry: FakeArtifactRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    root = gcp_pair["root"]
    artifact_registry.images.pop(docker_image_name(parse_image(ar_image("staging"))), None)
    before = {path.name: path.read_bytes() for path in root.iterdir()}

    assert run_gcp(root, artifact_registry) == 2

    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    target = "europe-west4-docker.pkg.dev/acme-ml-staging/model-serve/serve"
    assert f"image {IMAGE_DIGEST} is not in {target}" in err
    assert (
        f"crane copy europe-west4-docker.pkg.dev/acme-ml-dev/model-serve/serve@{IMAGE_DIGEST} {target}:sha256-" in err
    )
    assert {path.name: path.read_bytes() for path in root.iterdir()} == before


def test_gcp_registry_permission_denied_is_one_line_and_exit_1(
    gcp_pair: dict[str, Any], artifact_registry: FakeArtifactRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    root = gcp_pair["root"]
    artifact_registry.denied = True
    try:
        assert run_gcp(root, artifact_registry, "--dry-run") == 1
    finally:
        artifact_registry.denied = False
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "permission denied" in err and "roles/artifactregistry.reader" in err


def test_docker_image_resource_names_encode_nested_image_names() -> None:
    ref = parse_image(f"us-docker.pkg.dev/acme/images/team/serve@{IMAGE_DIGEST}")
    assert docker_image_name(ref) == (
        f"projects/acme/locations/us/repositories/images/dockerImages/team%2Fserve@{IMAGE_DIGEST}"
    )


def test_rewrite_keeps_quoting_and_quotes_what_yaml_would_retype() -> None:
    text = 'config:\n  model-deploy:package: # pinned\n    name: a\n    version: "1.0"\n    uri: u\n    digest: d\n'
    new = rewrite_package_block(text, {"name": "a", "version": "1.10", "uri": "u2", "digest": "d"})
    assert (
        new
        == 'config:\n  model-deploy:package: # pinned\n    name: a\n    version: "1.10"\n    uri: u2\n    digest: d\n'
    )
    plain = rewrite_package_block(text.replace('"1.0"', "x"), {"version": "1.10"})
    assert '    version: "1.10"\n' in plain
