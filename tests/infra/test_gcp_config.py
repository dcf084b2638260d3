"""GCP stack config: each rule's bad value is a ConfigError naming the key, the value and what is allowed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from infra.config import ConfigError, StackConfig, load_stack_config
from tests.infra.decommission_cases import CASES, STACK, DecommissionCase

DIGEST = "0123456789abcdef" * 4
IMAGE = "europe-west4-docker.pkg.dev/acme-ml/model-serve/serve@sha256:" + "ab" * 32
G = "model-deploy:gcp"

Values = dict[str, Any]


def cloud_run_dev() -> Values:
    return {
        "model-deploy:environment": "dev",
        "model-deploy:cloud": "gcp",
        "model-deploy:package": {
            "name": "digits",
            "version": "1.0.0",
            "uri": f"gs://acme-models/models/digits/{DIGEST}/",
            "digest": DIGEST,
            "image": IMAGE,
        },
        G: {
            "project": "acme-ml",
            "region": "europe-west4",
            "target": "cloudrun",
            "store": {"bucketName": "acme-models", "repository": {"name": "model-serve"}},
            "cloudRun": {"serviceName": "digits-dev", "cpu": "4", "memory": "16Gi"},
        },
    }


def vertex_dev() -> Values:
    values = cloud_run_dev()
    del values[G]["cloudRun"]
    values[G]["target"] = "vertex"
    values[G]["vertex"] = {"endpointName": "digits dev", "machineType": "n1-standard-4"}
    return values


def _load(values: Values) -> StackConfig:
    return load_stack_config(values, stack=values["model-deploy:environment"])


def _gcp(*path: str, value: Any) -> Callable[[Values], None]:
    def mutate(values: Values) -> None:
        node = values[G]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value

    return mutate


def _package(key: str, value: str) -> Callable[[Values], None]:
    return lambda values: values["model-deploy:package"].__setitem__(key, value)


def _all(*mutations: Callable[[Values], None]) -> Callable[[Values], None]:
    def mutate(values: Values) -> None:
        for mutation in mutations:
            mutation(values)

    return mutate


R = f"{G}.cloudRun"
V = f"{G}.vertex"
S = f"{G}.store"

BAD_CASES: list[tuple[str, Callable[[], Values], Callable[[Values], None], str, str]] = [
    # project, region, target
    ("project-short", cloud_run_dev, _gcp("project", value="acme"), f"{G}.project", "must be 6-30 characters"),
    ("project-uppercase", cloud_run_dev, _gcp("project", value="Acme-ml"), f"{G}.project", "GCP project ID"),
    ("project-trailing-hyphen", cloud_run_dev, _gcp("project", value="acme-ml-"), f"{G}.project", "not ending"),
    ("region-unknown", cloud_run_dev, _gcp("region", value="europe-west5"), f"{G}.region", "did you mean"),
    ("region-not-cloud-run", cloud_run_dev, _gcp("region", value="us-east7"), f"{G}.region", "not a Cloud Run"),
    ("target", cloud_run_dev, _gcp("target", value="gke"), f"{G}.target", "one of cloudrun, vertex"),
    (
        "vertex-batch-jobs-not-a-boolean",
        vertex_dev,
        lambda v: v[G]["vertex"].update(batchJobs="often"),
        f"{V}.batchJobs",
        "must be true or false",
    ),
    ("cloudrun-section-missing", vertex_dev, _gcp("target", value="cloudrun"), f"{G}.cloudRun", "is required"),
    (
        "vertex-section-extra",
        cloud_run_dev,
        _gcp("vertex", value={"endpointName": "x", "machineType": "n1-standard-2"}),
        f"{G}.vertex",
        "is set but",
    ),
    ("unknown-key", cloud_run_dev, _gcp("cloudRun", "cpus", value="2"), f"{R}.cpus", "cpu"),
    # store
    ("bucket-short", cloud_run_dev, _gcp("store", "bucketName", value="ab"), f"{S}.bucketName", "3-63"),
    ("bucket-goog", cloud_run_dev, _gcp("store", "bucketName", value="goog-models"), f"{S}.bucketName", "goog"),
    (
        "bucket-google",
        cloud_run_dev,
        _gcp("store", "bucketName", value="my-google-models"),
        f"{S}.bucketName",
        "google",
    ),
    (
        "bucket-dotted-part",
        cloud_run_dev,
        _gcp("store", "bucketName", value="a." + "b" * 64),
        f"{S}.bucketName",
        "dot-separated",
    ),
    (
        "bucket-not-package",
        cloud_run_dev,
        _gcp("store", "bucketName", value="other-models"),
        f"{S}.bucketName",
        "not the bucket",
    ),
    ("kms-key", cloud_run_dev, _gcp("store", "kmsKeyName", value="my-key"), f"{S}.kmsKeyName", "Cloud KMS key name"),
    ("soft-delete", cloud_run_dev, _gcp("store", "softDeleteDays", value=3), f"{S}.softDeleteDays", "0 (off) or 7-90"),
    ("soft-delete-max", cloud_run_dev, _gcp("store", "softDeleteDays", value=91), f"{S}.softDeleteDays", "7-90"),
    (
        "noncurrent-days",
        cloud_run_dev,
        _gcp("store", "noncurrentVersionDays", value=0),
        f"{S}.noncurrentVersionDays",
        "at least 1",
    ),
    (
        "repository-name",
        cloud_run_dev,
        _gcp("store", "repository", "name", value="Model_Serve"),
        f"{S}.repository.name",
        "Artifact Registry",
    ),
    (
        "keep-recent",
        cloud_run_dev,
        _gcp("store", "repository", "keepRecentVersions", value=0),
        f"{S}.repository.keepRecentVersions",
        "at least 1",
    ),
    # package
    (
        "package-in-s3",
        cloud_run_dev,
        _package("uri", f"s3://acme-models/models/digits/{DIGEST}/"),
        "model-deploy:package.uri",
        "not in Cloud Storage",
    ),
    (
        "image-not-artifact-registry",
        cloud_run_dev,
        _package("image", "123456789012.dkr.ecr.eu-west-1.amazonaws.com/serve@sha256:" + "ab" * 32),
        "model-deploy:package.image",
        "Artifact Registry",
    ),
    (
        "image-other-repository",
        cloud_run_dev,
        _package("image", IMAGE.replace("/model-serve/", "/other/")),
        "model-deploy:package.image",
        "europe-west4-docker.pkg.dev/acme-ml/model-serve/",
    ),
    # Cloud Run values
    ("service-name-long", cloud_run_dev, _gcp("cloudRun", "serviceName", value="d" * 50), f"{R}.serviceName", "1-49"),
    (
        "service-name-start",
        cloud_run_dev,
        _gcp("cloudRun", "serviceName", value="1digits"),
        f"{R}.serviceName",
        "starting with a letter",
    ),
    ("cpu-value", cloud_run_dev, _gcp("cloudRun", "cpu", value="3"), f"{R}.cpu", "not an allowed CPU"),
    ("cpu-format", cloud_run_dev, _gcp("cloudRun", "cpu", value="two"), f"{R}.cpu", "not a CPU limit"),
    ("cpu-tiny", cloud_run_dev, _gcp("cloudRun", "cpu", value="50m"), f"{R}.cpu", "80m-1000m"),
    ("memory-format", cloud_run_dev, _gcp("cloudRun", "memory", value="16GB"), f"{R}.memory", "<n>Gi"),
    ("memory-max", cloud_run_dev, _gcp("cloudRun", "memory", value="64Gi"), f"{R}.memory", "512Mi-32Gi"),
    ("memory-min", cloud_run_dev, _gcp("cloudRun", "memory", value="256Mi"), f"{R}.memory", "512Mi-32Gi"),
    ("concurrency-max", cloud_run_dev, _gcp("cloudRun", "concurrency", value=1001), f"{R}.concurrency", "1-1000"),
    ("concurrency-zero", cloud_run_dev, _gcp("cloudRun", "concurrency", value=0), f"{R}.concurrency", "1-1000"),
    ("timeout", cloud_run_dev, _gcp("cloudRun", "timeoutSeconds", value=3601), f"{R}.timeoutSeconds", "1-3600"),
    (
        "invoker-format",
        cloud_run_dev,
        _gcp("cloudRun", "invokers", value=["alice@example.com"]),
        f"{R}.invokers[0]",
        "user:<email>",
    ),
    (
        "invoker-public",
        cloud_run_dev,
        _gcp("cloudRun", "invokers", value=["allUsers"]),
        f"{R}.invokers[0]",
        "public: true",
    ),
    (
        "delivery",
        cloud_run_dev,
        _gcp("cloudRun", "packageDelivery", value="copy"),
        f"{R}.packageDelivery",
        "one of mount, fetch",
    ),
    (
        "ingress",
        cloud_run_dev,
        _gcp("cloudRun", "ingress", value="private"),
        f"{R}.ingress",
        "one of all, internal, internal-and-cloud-load-balancing",
    ),
    (
        "gpu-type",
        cloud_run_dev,
        _gcp("cloudRun", "gpu", value={"type": "nvidia-t4"}),
        f"{R}.gpu.type",
        "one of nvidia-l4",
    ),
    # Cloud Run combinations
    (
        "memory-needs-2-cpu",
        cloud_run_dev,
        _all(_gcp("cloudRun", "cpu", value="1"), _gcp("cloudRun", "memory", value="6Gi")),
        f"{R}.memory",
        "needs at least 2 CPU",
    ),
    (
        "memory-8gi-needs-4-cpu",
        cloud_run_dev,
        _all(_gcp("cloudRun", "cpu", value="2"), _gcp("cloudRun", "memory", value="12Gi")),
        f"{R}.memory",
        "needs at least 4 CPU",
    ),
    (
        "memory-over-24gi-needs-8-cpu",
        cloud_run_dev,
        _all(_gcp("cloudRun", "cpu", value="6"), _gcp("cloudRun", "memory", value="32Gi")),
        f"{R}.memory",
        "needs at least 8 CPU",
    ),
    ("cpu-needs-memory", cloud_run_dev, _gcp("cloudRun", "memory", value="1Gi"), f"{R}.memory", "too little for 4 CPU"),
    (
        "sub-cpu-memory",
        cloud_run_dev,
        _all(
            _gcp("cloudRun", "cpu", value="500m"),
            _gcp("cloudRun", "memory", value="2Gi"),
            _gcp("cloudRun", "concurrency", value=1),
        ),
        f"{R}.cpu",
        "1 CPU for more than 1Gi",
    ),
    (
        "sub-cpu-concurrency",
        cloud_run_dev,
        _all(_gcp("cloudRun", "cpu", value="500m"), _gcp("cloudRun", "memory", value="512Mi")),
        f"{R}.concurrency",
        "must be 1",
    ),
    (
        "sub-cpu-mount",
        cloud_run_dev,
        _all(
            _gcp("cloudRun", "cpu", value="1000m"),
            _gcp("cloudRun", "cpu", value="800m"),
            _gcp("cloudRun", "memory", value="512Mi"),
            _gcp("cloudRun", "concurrency", value=1),
            _gcp("cloudRun", "packageDelivery", value="mount"),
        ),
        f"{R}.cpu",
        "second generation",
    ),
    (
        "gpu-cpu",
        cloud_run_dev,
        _all(
            _gcp("cloudRun", "gpu", value={"type": "nvidia-l4"}),
            _gcp("cloudRun", "cpu", value="2"),
            _gcp("cloudRun", "memory", value="8Gi"),
        ),
        f"{R}.cpu",
        "at least 4 CPU",
    ),
    (
        "gpu-memory",
        cloud_run_dev,
        _all(_gcp("cloudRun", "gpu", value={"type": "nvidia-l4"}), _gcp("cloudRun", "memory", value="8Gi")),
        f"{R}.memory",
        "at least 16Gi",
    ),
    (
        "gpu-count",
        cloud_run_dev,
        _gcp("cloudRun", "gpu", value={"type": "nvidia-l4", "count": 2}),
        f"{R}.gpu.count",
        "must be 1",
    ),
    (
        "gpu-region",
        cloud_run_dev,
        _all(
            _gcp("cloudRun", "gpu", value={"type": "nvidia-l4"}),
            _gcp("region", value="europe-west2"),
            _package("image", IMAGE.replace("europe-west4", "europe-west2")),
        ),
        f"{G}.region",
        "no Cloud Run GPUs",
    ),
    (
        "min-over-max",
        cloud_run_dev,
        _all(_gcp("cloudRun", "minInstances", value=5), _gcp("cloudRun", "maxInstances", value=2)),
        f"{R}.minInstances",
        "more than cloudRun.maxInstances",
    ),
    (
        "mount-needs-uncompressed",
        cloud_run_dev,
        _all(
            _package("uri", f"gs://acme-models/models/digits/{DIGEST}/model.tar.gz"),
            _gcp("cloudRun", "packageDelivery", value="mount"),
        ),
        f"{R}.packageDelivery",
        "uncompressed layout",
    ),
    # Vertex
    (
        "machine-type",
        vertex_dev,
        _gcp("vertex", "machineType", value="n1-standrd-4"),
        f"{V}.machineType",
        "did you mean n1-standard",
    ),
    (
        "accelerator-name",
        vertex_dev,
        _gcp("vertex", "acceleratorType", value="NVIDIA_T4"),
        f"{V}.acceleratorType",
        "AcceleratorType",
    ),
    (
        "accelerator-count-without-type",
        vertex_dev,
        _gcp("vertex", "acceleratorCount", value=1),
        f"{V}.acceleratorCount",
        "needs vertex.acceleratorType",
    ),
    (
        "accelerator-type-without-count",
        vertex_dev,
        _gcp("vertex", "acceleratorType", value="NVIDIA_TESLA_T4"),
        f"{V}.acceleratorCount",
        "at least 1",
    ),
    (
        "accelerator-misfit",
        vertex_dev,
        _all(_gcp("vertex", "acceleratorType", value="NVIDIA_L4"), _gcp("vertex", "acceleratorCount", value=1)),
        f"{V}.acceleratorType",
        "does not fit n1-standard-4",
    ),
    (
        "cpu-machine-with-gpu",
        vertex_dev,
        _all(
            _gcp("vertex", "machineType", value="n2-standard-8"),
            _gcp("vertex", "acceleratorType", value="NVIDIA_TESLA_T4"),
            _gcp("vertex", "acceleratorCount", value=1),
        ),
        f"{V}.acceleratorType",
        "takes no accelerator",
    ),
    (
        "g2-needs-l4",
        vertex_dev,
        _gcp("vertex", "machineType", value="g2-standard-8"),
        f"{V}.acceleratorType",
        "is required",
    ),
    (
        "a2-fixed-count",
        vertex_dev,
        _all(
            _gcp("vertex", "machineType", value="a2-highgpu-2g"),
            _gcp("vertex", "acceleratorType", value="NVIDIA_TESLA_A100"),
            _gcp("vertex", "acceleratorCount", value=1),
        ),
        f"{V}.acceleratorCount",
        "must be 2",
    ),
    (
        "n1-gpu-count",
        vertex_dev,
        _all(_gcp("vertex", "acceleratorType", value="NVIDIA_TESLA_T4"), _gcp("vertex", "acceleratorCount", value=3)),
        f"{V}.acceleratorCount",
        "1, 2, 4 or 8",
    ),
    (
        "replicas",
        vertex_dev,
        _gcp("vertex", "minReplicas", value=3),
        f"{V}.minReplicas",
        "more than vertex.maxReplicas",
    ),
    ("traffic", vertex_dev, _gcp("vertex", "trafficPercent", value=0), f"{V}.trafficPercent", "1-100"),
    ("cpu-target", vertex_dev, _gcp("vertex", "cpuUtilizationTarget", value=101), f"{V}.cpuUtilizationTarget", "1-100"),
    (
        "duty-cycle-without-gpu",
        vertex_dev,
        _gcp("vertex", "acceleratorDutyCycleTarget", value=60),
        f"{V}.acceleratorDutyCycleTarget",
        "needs vertex.acceleratorType",
    ),
    ("vertex-region", vertex_dev, _gcp("region", value="europe-west10"), f"{G}.region", "not a Vertex AI region"),
    # labels and prod
    (
        "tag-not-label",
        cloud_run_dev,
        lambda v: v.__setitem__("model-deploy:tags", {"Team": "ml"}),
        "model-deploy:tags.Team",
        "GCP label key",
    ),
    (
        "tag-value-not-label",
        cloud_run_dev,
        lambda v: v.__setitem__("model-deploy:tags", {"team": "ML Platform"}),
        "model-deploy:tags.team",
        "GCP label value",
    ),
]

PROD_CASES: list[tuple[str, Callable[[Values], None], str, str]] = [
    (
        "deletion-protection-off",
        _gcp("cloudRun", "deletionProtection", value=False),
        f"{R}.deletionProtection",
        "not allowed in prod",
    ),
    ("force-destroy", _gcp("store", "forceDestroy", value=True), f"{S}.forceDestroy", "not allowed in prod"),
]


@pytest.mark.parametrize(
    ("start", "mutate", "key", "fragment"),
    [pytest.param(start, mutate, key, fragment, id=name) for name, start, mutate, key, fragment in BAD_CASES],
)
def test_bad_value_names_its_key(
    start: Callable[[], Values], mutate: Callable[[Values], None], key: str, fragment: str
) -> None:
    values = copy.deepcopy(start())
    _load(values)  # the starting point itself is valid
    mutate(values)
    with pytest.raises(ConfigError) as caught:
        _load(values)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.key == key, message
    assert message.startswith(f"{key}: "), message
    assert fragment in message, message


@pytest.mark.parametrize(("mutate", "key", "fragment"), [pytest.param(m, k, f, id=n) for n, m, k, f in PROD_CASES])
def test_prod_refuses_unprotected_resources(mutate: Callable[[Values], None], key: str, fragment: str) -> None:
    values = cloud_run_dev()
    values["model-deploy:environment"] = "prod"
    _load(values)
    mutate(values)
    with pytest.raises(ConfigError) as caught:
        _load(values)
    assert caught.value.key == key and fragment in str(caught.value)


def _prod(start: Callable[[], Values], **gcp: Any) -> Values:
    values = start()
    values["model-deploy:environment"] = "prod"  # the stack is named prod too (see _load)
    values[G].update(gcp)
    return values


def test_prod_deletion_protection_off_needs_decommission_naming_the_stack() -> None:
    unprotected = _prod(cloud_run_dev)
    unprotected[G]["cloudRun"]["deletionProtection"] = False
    with pytest.raises(ConfigError) as caught:
        _load(unprotected)
    assert caught.value.key == f"{R}.deletionProtection"
    assert "also set model-deploy:gcp.decommission: prod" in str(caught.value)

    decommissioned = copy.deepcopy(unprotected)
    decommissioned[G]["decommission"] = "prod"
    gcp = _load(decommissioned).require_gcp()
    assert gcp.decommissioning("prod") and gcp.cloud_run is not None and gcp.cloud_run.deletion_protection is False


def test_decommission_alone_or_for_another_stack_is_refused() -> None:
    with pytest.raises(ConfigError) as caught:
        _load(_prod(cloud_run_dev, decommission="prod"))  # deletion protection still on
    assert caught.value.key == f"{G}.decommission"
    assert "needs model-deploy:gcp.cloudRun.deletionProtection: false as well" in str(caught.value)

    copied = _prod(cloud_run_dev, decommission="gcp-prod")
    copied[G]["cloudRun"]["deletionProtection"] = False
    with pytest.raises(ConfigError) as caught:
        _load(copied)
    messages = {problem.key: str(problem) for problem in caught.value.problems}
    assert "names another stack: set it to this stack's own name (prod)" in messages[f"{G}.decommission"]
    assert f"{R}.deletionProtection" in messages  # a wrong name lifts nothing


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_validation_agrees_with_the_policy_pack(case: DecommissionCase) -> None:
    # The policy pack's verdict on the same table: test_policy.py::test_policy_agrees_with_validation_on_...
    values = _prod(cloud_run_dev)
    values[G]["cloudRun"].update(case.cloud_run)
    if case.decommission is not None:
        values[G]["decommission"] = case.decommission
    try:
        load_stack_config(values, stack=STACK)
    except ConfigError:
        assert not case.allowed
    else:
        assert case.allowed


def test_a_vertex_prod_stack_is_decommissioned_by_naming_it() -> None:
    # Vertex endpoints have no deletion protection: naming the stack is the deliberate setting.
    assert _load(_prod(vertex_dev, decommission="prod")).require_gcp().decommissioning("prod")
    with pytest.raises(ConfigError, match="names another stack"):
        _load(_prod(vertex_dev, decommission="staging"))


def test_valid_gpu_and_vertex_stacks_and_defaults() -> None:
    values = cloud_run_dev()
    values[G]["cloudRun"].update(gpu={"type": "nvidia-l4"}, packageDelivery="mount", cpu="8", memory="32Gi")
    run = _load(values).require_gcp().cloud_run
    assert run is not None and run.gpu is not None and run.gpu.count == 1
    assert (run.millicpu, run.memory_mib, run.concurrency, run.timeout_seconds) == (8000, 32 * 1024, 80, 300)
    values = vertex_dev()
    values[G]["vertex"].update(
        machineType="g2-standard-24", acceleratorType="NVIDIA_L4", acceleratorCount=2, acceleratorDutyCycleTarget=60
    )
    vertex = _load(values).require_gcp().vertex
    assert vertex is not None
    assert (vertex.min_replicas, vertex.max_replicas, vertex.traffic_percent, vertex.deploy_timeout_seconds) == (
        1,
        1,
        100,
        1800,
    )
    assert vertex.accelerator_duty_cycle_target == 60 and vertex.cpu_utilization_target is None


def test_labels_are_sanitised_standard_tags() -> None:
    values = cloud_run_dev()
    values["model-deploy:gitRevision"] = "3F2C1E9"
    values["model-deploy:tags"] = {"team": "ml-platform"}
    labels = _load(values).resource_labels
    assert labels == {
        "team": "ml-platform",
        "environment": "dev",
        "stack": "dev",
        "model": "digits",
        "model-version": "1_0_0",
        "package-digest": DIGEST[:63],
        "git-revision": "3f2c1e9",
        "managed-by": "model-deploy",
    }


def test_require_gcp_on_an_aws_stack() -> None:
    values = cloud_run_dev()
    config = _load(values)
    assert config.require_gcp().repository_url == "europe-west4-docker.pkg.dev/acme-ml/model-serve"
    with pytest.raises(ConfigError, match=r"^model-deploy:aws: is required to deploy to AWS$"):
        config.require_aws()
