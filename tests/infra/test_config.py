"""The stack config: what it accepts, and the one-line errors it gives for what it does not.

Every bad-value case asserts the exact key path, the bad value and what is allowed, because
that line is all a platform engineer sees when ``pulumi preview`` refuses a stack.
"""

from __future__ import annotations

import copy
import json
import re
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pulumi
import pulumi.runtime
import pytest

from infra.config import (
    ConfigError,
    StackConfig,
    aws_limits,
    from_pulumi,
    load_stack_config,
    load_stack_file,
)
from infra.config.aws_limits import CANARY_MAX_PERCENT, LINEAR_STEP_PERCENT, LOG_RETENTION_DAYS
from tests.infra.aws_stacks import (
    DIGEST,
    IMAGE,
    IMAGE_DIGEST,
    KMS_KEY,
    PACKAGE_URI,
    REGISTRY,
    TOPIC,
    Values,
    asynchronous,
    minimal_dev,
    serverless,
    shadow,
    uncompressed,
)

OTHER_DIGEST = "f" * 64

# Time zones are checked against the machine's tz database; without one there is nothing to check against.
NEEDS_TZDATA = pytest.mark.skipif(not zoneinfo.available_timezones(), reason="no IANA tz database on this machine")

Mutation = Callable[[Values], object]


def full_prod() -> Values:
    """Every AWS setting in use, as a production stack would have it."""
    values = minimal_dev()
    values.update(
        {
            "model-deploy:environment": "prod",
            "model-deploy:gitRevision": "3f2c1e9",
            "model-deploy:tags": {"team": "ml-platform", "cost-center": "1234", "app.kubernetes.io/name": "digits"},
            "aws:profile": "prod-admin",  # another provider's setting: ignored
        }
    )
    values["model-deploy:aws"] = {
        "store": {
            "create": False,
            "bucketName": "acme-models",
            "kmsKeyArn": KMS_KEY,
            "repositoryName": "model-serve",
            "noncurrentVersionExpirationDays": 90,
        },
        "endpoint": {
            "name": "digits-prod",
            "mode": "realtime",
            "networkIsolation": True,
            "vpc": {"subnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"], "securityGroupIds": ["sg-0123abcd"]},
            "variants": [{"name": "primary", "instanceType": "ml.c6i.xlarge", "initialInstanceCount": 2}],
            "dataCapture": {"samplingPercentage": 10, "captureResponses": False},
            "deployment": {
                "strategy": "canary",
                "canaryPercent": 10,
                "waitIntervalSeconds": 600,
                "terminationWaitSeconds": 300,
                "maximumExecutionTimeoutSeconds": 2700,
                "rollbackAlarms": ["digits-business-kpi"],
            },
            "autoscaling": {
                "minInstances": 2,
                "maxInstances": 8,
                "targetInvocationsPerInstance": 700,
                "scaleInCooldownSeconds": 600,
                "schedules": [
                    {
                        "name": "business-hours",
                        "schedule": "cron(0 7 ? * MON-FRI *)",
                        "timezone": "Europe/Amsterdam",
                        "minCapacity": 4,
                    },
                    {"name": "nights", "schedule": "cron(0 20 ? * MON-FRI *)", "minCapacity": 2, "maxCapacity": 4},
                ],
            },
            "alarms": {"modelLatencyP99Ms": 250, "errorRate5xxPercent": 0.5, "snsTopicArn": TOPIC},
            "allowedInstanceFamilies": ["ml.c6i", "ml.m5"],
        },
        "logRetentionDays": 365,
    }
    return values


def a_b() -> Values:
    values = minimal_dev()
    values["model-deploy:environment"] = "staging"
    values["model-deploy:aws"]["endpoint"] = {
        "name": "digits-ab",
        "variants": [
            {"name": "champion", "instanceType": "ml.m5.large", "weight": 0.9},
            {"name": "challenger", "instanceType": "ml.m5.large", "weight": 0.1},
        ],
        "autoscaling": {"minInstances": 1, "maxInstances": 3, "targetConcurrentRequestsPerModel": 4},
    }
    return values


def vpc() -> Values:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"]["vpc"] = {
        "subnetIds": ["subnet-0a1b2c3d"],
        "securityGroupIds": ["sg-0123abcd", "sg-4567ef01"],
    }
    return values


def endpoint(values: Values) -> dict[str, Any]:
    endpoint_values: dict[str, Any] = values["model-deploy:aws"]["endpoint"]
    return endpoint_values


def variant(values: Values, index: int = 0) -> dict[str, Any]:
    variant_values: dict[str, Any] = endpoint(values)["variants"][index]
    return variant_values


def _load(values: Values, stack: str = "dev") -> StackConfig:
    return load_stack_config(values, stack=stack)


# --- valid stacks ----------------------------------------------------------------------------------------


def _check_minimal(config: StackConfig) -> None:
    aws = config.require_aws()
    assert (config.environment, config.region, config.stack) == ("dev", "eu-west-1", "dev")
    assert aws.store.create and aws.store.noncurrent_version_expiration_days == 30
    assert aws.endpoint.mode == "realtime" and aws.endpoint.network_isolation
    assert aws.endpoint.variants[0].initial_instance_count == 1 and aws.endpoint.variants[0].weight == 1
    assert aws.endpoint.alarms.model_latency_p99_ms == 1000 and aws.endpoint.alarms.evaluation_periods == 3
    assert aws.endpoint.async_settings is None and aws.log_retention_days == 30
    assert config.package.layout == "archive"
    assert config.package.prefix_uri == f"s3://acme-models/packages/digits/{DIGEST}/"
    image = config.package.image_ref
    assert (image.registry, image.repository, image.digest) == (REGISTRY, "model-serve", IMAGE_DIGEST)
    assert (image.ecr_account, image.ecr_region) == ("123456789012", "eu-west-1")
    assert config.resource_tags == {
        "environment": "dev",
        "stack": "dev",
        "model": "digits",
        "model-version": "1.0.0",
        "package-digest": DIGEST,
        "managed-by": "model-deploy",
    }
    assert not config.is_prod and config.is_dev


def _check_prod(config: StackConfig) -> None:
    aws = config.require_aws()
    assert config.is_prod
    assert config.resource_tags["git-revision"] == "3f2c1e9"
    assert config.resource_tags["app.kubernetes.io/name"] == "digits"
    assert config.resource_tags["environment"] == "prod"
    assert not aws.store.create and aws.store.kms_key_arn == KMS_KEY
    deployment = aws.endpoint.deployment
    assert deployment is not None and deployment.strategy == "canary" and deployment.canary_percent == 10
    assert deployment.rollback_on_alarms and deployment.rollback_alarms == ("digits-business-kpi",)
    scaling = aws.endpoint.autoscaling
    assert scaling is not None and (scaling.min_instances, scaling.max_instances) == (2, 8)
    assert scaling.scale_out_cooldown_seconds == 60 and len(scaling.schedules) == 2
    capture = aws.endpoint.data_capture
    assert capture is not None and capture.enabled and capture.capture_requests and not capture.capture_responses
    assert aws.endpoint.vpc is not None and aws.endpoint.vpc.subnet_ids == ("subnet-0a1b2c3d", "subnet-4e5f6a7b")
    assert aws.endpoint.variants[0].instance_family == "ml.c6i"


def _check_serverless(config: StackConfig) -> None:
    endpoint_config = config.require_aws().endpoint
    assert endpoint_config.mode == "serverless"
    # Serverless endpoints do not support network isolation: the default follows the mode.
    assert not endpoint_config.network_isolation
    settings = endpoint_config.variants[0].serverless
    assert settings is not None and (settings.memory_size_mb, settings.provisioned_concurrency) == (2048, 2)
    assert endpoint_config.variants[0].instance_family is None


def _check_async(config: StackConfig) -> None:
    settings = config.require_aws().endpoint.async_settings
    assert settings is not None and settings.max_concurrent_invocations_per_instance == 4
    assert settings.success_topic_arn == TOPIC


def _check_a_b(config: StackConfig) -> None:
    variants = config.require_aws().endpoint.variants
    assert [(v.name, v.weight) for v in variants] == [("champion", 0.9), ("challenger", 0.1)]


def _check_vpc(config: StackConfig) -> None:
    endpoint_config = config.require_aws().endpoint
    assert endpoint_config.vpc is not None and endpoint_config.vpc.security_group_ids == ("sg-0123abcd", "sg-4567ef01")
    assert endpoint_config.network_isolation


def _check_shadow(config: StackConfig) -> None:
    endpoint_config = config.require_aws().endpoint
    assert [v.name for v in endpoint_config.all_variants] == ["primary", "shadow"]


def _check_uncompressed(config: StackConfig) -> None:
    assert config.package.layout == "uncompressed"


@pytest.mark.parametrize(
    ("values", "stack", "check"),
    [
        pytest.param(minimal_dev(), "dev", _check_minimal, id="minimal-dev"),
        pytest.param(full_prod(), "prod", _check_prod, id="full-prod"),
        pytest.param(serverless(), "staging", _check_serverless, id="serverless"),
        pytest.param(asynchronous(), "dev", _check_async, id="async"),
        pytest.param(a_b(), "staging", _check_a_b, id="multi-variant-a-b"),
        pytest.param(vpc(), "dev", _check_vpc, id="vpc-network-isolation"),
        pytest.param(shadow(), "dev", _check_shadow, id="shadow-variant"),
        pytest.param(uncompressed(), "dev", _check_uncompressed, id="uncompressed-package"),
    ],
)
def test_valid_stacks_load(values: Values, stack: str, check: Callable[[StackConfig], None]) -> None:
    check(_load(values, stack))


def test_serving_settings_become_the_servers_variables() -> None:
    values = minimal_dev()
    assert _load(values).serving.environment() == {}, "unset: the server's own defaults"
    values["model-deploy:serving"] = {
        "workers": "auto",
        "maxBatchSize": "AUTO",
        "maxBatchDelayMs": 2,
        "maxQueue": 256,
        "computeThreads": 1,
        "logLevel": "WARNING",
    }
    assert _load(values).serving.environment() == {
        "MODEL_SERVER_WORKERS": "auto",
        "MODEL_SERVER_MAX_BATCH_SIZE": "auto",
        "MODEL_SERVER_MAX_BATCH_DELAY_MS": "2",
        "MODEL_SERVER_MAX_QUEUE": "256",
        "MODEL_SERVER_COMPUTE_THREADS": "1",
        "MODEL_SERVER_LOG_LEVEL": "WARNING",
    }


def test_serving_variables_are_ones_the_server_reads() -> None:
    from inference.config import load_config

    values = minimal_dev()
    values["model-deploy:serving"] = {"workers": 3, "maxBatchSize": 16, "maxQueue": 64, "logLevel": "ERROR"}
    server = load_config(_load(values).serving.environment())
    assert (server.workers, server.max_batch_size, server.max_queue, server.log_level) == (3, 16, 64, "ERROR")


def test_config_is_frozen() -> None:
    config = _load(minimal_dev())
    with pytest.raises(ValueError, match="frozen"):
        config.environment = "prod"


# --- one bad value per rule --------------------------------------------------------------------------------


def _set(path: str, value: object) -> Mutation:
    """A mutation setting ``value`` at a key path such as ``model-deploy:aws.endpoint.variants[0].name``."""
    match = re.match(r"^([^.\[]+)(.*)$", path)
    assert match is not None
    top, rest = match.groups()
    parts: list[str | int] = [top]
    parts += [name or int(index) for name, index in re.findall(r"\.([^.\[\]]+)|\[(\d+)\]", rest)]

    def mutate(values: Values) -> None:
        target: Any = values
        for part in parts[:-1]:
            target = target[part]
        target[parts[-1]] = value

    return mutate


def _drop(key: str) -> Mutation:
    return lambda values: values.pop(key)


def _endpoint_update(**changes: object) -> Mutation:
    return lambda values: endpoint(values).update(changes)


def _prod(values: Values) -> None:
    values["model-deploy:environment"] = "prod"


def _both(*mutations: Mutation) -> Mutation:
    def mutate(values: Values) -> None:
        for mutation in mutations:
            mutation(values)

    return mutate


SERVERLESS_VARIANT = {"name": "primary", "serverless": {"memorySizeMb": 1024, "maxConcurrency": 5}}
E = "model-deploy:aws.endpoint"

# (id, starting stack, mutation, expected key, fragments the message must contain)
BAD_CASES: list[tuple[str, Callable[[], Values], Mutation, str, tuple[str, ...]]] = [
    # the serving container
    (
        "serving-workers-zero",
        minimal_dev,
        _set("model-deploy:serving", {"workers": 0}),
        "model-deploy:serving.workers",
        ("0 is out of range", "auto or 1-256"),
    ),
    (
        "serving-workers-word",
        minimal_dev,
        _set("model-deploy:serving", {"workers": "many"}),
        "model-deploy:serving.workers",
        ("'many'", "auto or a whole number 1-256"),
    ),
    (
        "serving-batch-fraction",
        minimal_dev,
        _set("model-deploy:serving", {"maxBatchSize": 2.5}),
        "model-deploy:serving.maxBatchSize",
        ("2.5", "auto or a whole number 1-4096"),
    ),
    (
        "serving-log-level",
        minimal_dev,
        _set("model-deploy:serving", {"logLevel": "LOUD"}),
        "model-deploy:serving.logLevel",
        ("'LOUD'", "DEBUG, INFO, WARNING, ERROR"),
    ),
    (
        "serving-unknown-key",
        minimal_dev,
        _set("model-deploy:serving", {"threads": 2}),
        "model-deploy:serving.threads",
        ("not a known key", "computeThreads"),
    ),
    # keys and types
    (
        "misspelled-instance-type",
        minimal_dev,
        _set(f"{E}.variants[0].instanceType", "ml.m5.larg"),
        f"{E}.variants[0].instanceType",
        ("'ml.m5.larg' is not a SageMaker real-time instance type; did you mean ml.m5.large, ml.m5.xlarge?",),
    ),
    (
        "misspelled-nested-key",
        minimal_dev,
        lambda v: variant(v).update(instanceTyp=variant(v).pop("instanceType")),
        f"{E}.variants[0].instanceTyp",
        ("is not a known key; did you mean instanceType?",),
    ),
    (
        "misspelled-top-key",
        minimal_dev,
        lambda v: v.update({"model-deploy:enviroment": v.pop("model-deploy:environment")}),
        "model-deploy:enviroment",
        ("is not a known key; did you mean model-deploy:environment?",),
    ),
    (
        "missing-environment",
        minimal_dev,
        _drop("model-deploy:environment"),
        "model-deploy:environment",
        ("is required: dev, staging or prod",),
    ),
    (
        "unknown-environment",
        minimal_dev,
        _set("model-deploy:environment", "prd"),
        "model-deploy:environment",
        ("'prd' is not one of dev, staging, prod; did you mean prod?",),
    ),
    (
        "unknown-mode",
        minimal_dev,
        _endpoint_update(mode="serverles"),
        f"{E}.mode",
        ("'serverles' is not one of realtime, serverless, async; did you mean serverless?",),
    ),
    (
        "unquoted-version",
        minimal_dev,
        _set("model-deploy:package.version", 1.1),
        "model-deploy:package.version",
        ("1.1 must be a string (quote it in YAML",),
    ),
    (
        "count-not-a-number",
        minimal_dev,
        _set(f"{E}.variants[0].initialInstanceCount", "two"),
        f"{E}.variants[0].initialInstanceCount",
        ("'two' must be a whole number",),
    ),
    # package pin
    (
        "uri-digest-differs",
        minimal_dev,
        _set("model-deploy:package.digest", OTHER_DIGEST),
        "model-deploy:package.uri",
        (f"points at digest {DIGEST}, but model-deploy:package.digest is {OTHER_DIGEST}",),
    ),
    (
        "uri-name-differs",
        minimal_dev,
        _set("model-deploy:package.name", "letters"),
        "model-deploy:package.uri",
        ("points at package 'digits', but model-deploy:package.name is 'letters'",),
    ),
    (
        "uri-without-digest",
        minimal_dev,
        _set("model-deploy:package.uri", "s3://acme-models/packages/digits/latest/model.tar.gz"),
        "model-deploy:package.uri",
        ("is not a package URI", "64 lowercase hex"),
    ),
    (
        "uri-on-local-disk",
        minimal_dev,
        _set("model-deploy:package.uri", f"file:///srv/models/digits/{DIGEST}/model.tar.gz"),
        "model-deploy:package.uri",
        ("is not a package URI in a cloud store",),
    ),
    (
        "uri-in-gcs-for-aws",
        minimal_dev,
        _set("model-deploy:package.uri", f"gs://acme-models/digits/{DIGEST}/model.tar.gz"),
        "model-deploy:package.uri",
        ("is not in S3",),
    ),
    (
        "bad-digest",
        minimal_dev,
        _set("model-deploy:package.digest", "ABC"),
        "model-deploy:package.digest",
        ("'ABC' is not a package digest: expected 64 lowercase hex",),
    ),
    (
        "bad-package-name",
        minimal_dev,
        _set("model-deploy:package.name", "Digits!"),
        "model-deploy:package.name",
        ("'Digits!' is not a package name",),
    ),
    (
        "image-by-tag",
        minimal_dev,
        _set("model-deploy:package.image", f"{REGISTRY}/model-serve:1.4.0"),
        "model-deploy:package.image",
        ("pins the image by tag '1.4.0'", "the digest is what promotion moves"),
    ),
    (
        "image-tag-and-digest",
        minimal_dev,
        _set("model-deploy:package.image", f"{REGISTRY}/model-serve:1.4.0@{IMAGE_DIGEST}"),
        "model-deploy:package.image",
        ("names both tag '1.4.0' and a digest: drop the tag",),
    ),
    (
        "image-without-registry",
        minimal_dev,
        _set("model-deploy:package.image", f"model-serve@{IMAGE_DIGEST}"),
        "model-deploy:package.image",
        ("is not a container image reference: expected <registry>/<repository>@sha256:<64 hex>",),
    ),
    (
        "image-short-digest",
        minimal_dev,
        _set("model-deploy:package.image", f"{REGISTRY}/model-serve@sha256:abc"),
        "model-deploy:package.image",
        ("has a malformed digest",),
    ),
    (
        "image-not-in-ecr",
        minimal_dev,
        _set("model-deploy:package.image", f"ghcr.io/acme/model-serve@{IMAGE_DIGEST}"),
        "model-deploy:package.image",
        ("is not in ECR",),
    ),
    (
        "image-in-another-region",
        minimal_dev,
        _set("aws:region", "us-east-1"),
        "model-deploy:package.image",
        ("is in eu-west-1, but aws:region is us-east-1",),
    ),
    # sections and region
    (
        "region-misspelled",
        minimal_dev,
        _set("aws:region", "eu-west-7"),
        "aws:region",
        ("'eu-west-7' is not a region where botocore knows SageMaker; did you mean", "eu-west-1"),
    ),
    (
        "region-missing",
        minimal_dev,
        _drop("aws:region"),
        "aws:region",
        ("is required because model-deploy:cloud is aws",),
    ),
    (
        "aws-section-missing",
        minimal_dev,
        _drop("model-deploy:aws"),
        "model-deploy:aws",
        ("is required because model-deploy:cloud is aws",),
    ),
    (
        "gcp-section-on-aws-stack",
        minimal_dev,
        _set(
            "model-deploy:gcp",
            {
                "project": "acme-ml",
                "region": "europe-west4",
                "target": "cloudrun",
                "store": {"repository": {"name": "model-serve"}},
                "cloudRun": {"serviceName": "digits"},
            },
        ),
        "model-deploy:gcp",
        ("is set but model-deploy:cloud is aws",),
    ),
    (
        "gcp-section-missing",
        minimal_dev,
        lambda v: v.update({"model-deploy:cloud": "gcp", "model-deploy:aws": None}),
        "model-deploy:gcp",
        ("is required because model-deploy:cloud is gcp",),
    ),
    # names
    (
        "endpoint-name-pattern",
        minimal_dev,
        _endpoint_update(name="digits_dev"),
        f"{E}.name",
        ("'digits_dev' is not a valid SageMaker endpoint name", "(sagemaker EndpointName)"),
    ),
    (
        "endpoint-name-length",
        minimal_dev,
        _endpoint_update(name="d" * 64),
        f"{E}.name",
        ("must be 1-63 characters long, not 64",),
    ),
    (
        "variant-name-pattern",
        minimal_dev,
        _set(f"{E}.variants[0].name", "-primary"),
        f"{E}.variants[0].name",
        ("'-primary' is not a valid SageMaker variant name", "(sagemaker VariantName)"),
    ),
    (
        "duplicate-variant-names",
        a_b,
        _set(f"{E}.variants[1].name", "champion"),
        f"{E}.variants[1].name",
        ("'champion' is already the name of", "variant names must be unique"),
    ),
    (
        "shadow-name-repeats",
        shadow,
        _set(f"{E}.shadowVariant.name", "primary"),
        f"{E}.shadowVariant.name",
        ("'primary' is already the name of model-deploy:aws.endpoint.variants[0].name",),
    ),
    # variants
    (
        "weights-all-zero",
        a_b,
        lambda v: [variant(v, i).update(weight=0) for i in (0, 1)],
        f"{E}.variants[0].weight",
        ("0.0 leaves the endpoint without traffic", "at least one must be above 0"),
    ),
    (
        "negative-weight",
        minimal_dev,
        _set(f"{E}.variants[0].weight", -1),
        f"{E}.variants[0].weight",
        ("-1 is out of range: a variant weight must be >= 0 (sagemaker ProductionVariant.InitialVariantWeight)",),
    ),
    (
        "eleven-variants",
        minimal_dev,
        _endpoint_update(variants=[{"name": f"v{i}", "instanceType": "ml.m5.large"} for i in range(11)]),
        f"{E}.variants",
        ("[11 entries] are too many: production variants must number 1-10",),
    ),
    (
        "no-variants",
        minimal_dev,
        _endpoint_update(variants=[]),
        f"{E}.variants",
        ("[0 entries] are too few",),
    ),
    (
        "zero-instances",
        minimal_dev,
        _set(f"{E}.variants[0].initialInstanceCount", 0),
        f"{E}.variants[0].initialInstanceCount",
        ("0 is out of range: the initial instance count must be >= 1",),
    ),
    (
        "instance-type-missing",
        minimal_dev,
        lambda v: variant(v).pop("instanceType"),
        f"{E}.variants[0].instanceType",
        ("is required when mode is realtime",),
    ),
    (
        "family-not-allowed",
        full_prod,
        _set(f"{E}.variants[0].instanceType", "ml.g5.xlarge"),
        f"{E}.variants[0].instanceType",
        ("'ml.g5.xlarge' is in family ml.g5", "allowedInstanceFamilies does not allow (allowed: ml.c6i, ml.m5)"),
    ),
    (
        "unknown-family",
        minimal_dev,
        _endpoint_update(allowedInstanceFamilies=["ml.m55"]),
        f"{E}.allowedInstanceFamilies[0]",
        ("'ml.m55' is not a SageMaker instance family", "did you mean ml.m5"),
    ),
    # serverless
    (
        "serverless-memory-3000",
        serverless,
        _set(f"{E}.variants[0].serverless.memorySizeMb", 3000),
        f"{E}.variants[0].serverless.memorySizeMb",
        ("3000 is not an allowed serverless memory size: use one of 1024, 2048, 3072, 4096, 5120, 6144 MB",),
    ),
    (
        "serverless-concurrency-range",
        serverless,
        _set(f"{E}.variants[0].serverless.maxConcurrency", 500),
        f"{E}.variants[0].serverless.maxConcurrency",
        ("500 is out of range: the serverless max concurrency must be 1-200",),
    ),
    (
        "provisioned-above-max",
        serverless,
        _set(f"{E}.variants[0].serverless.provisionedConcurrency", 30),
        f"{E}.variants[0].serverless.provisionedConcurrency",
        ("30 exceeds maxConcurrency (20)",),
    ),
    (
        "serverless-mixed-with-instances",
        a_b,
        lambda v: endpoint(v)["variants"].__setitem__(1, dict(SERVERLESS_VARIANT, name="challenger")),
        f"{E}.variants[1].serverless",
        ("variants[0] runs on instances: serverless and instance-based variants cannot be mixed",),
    ),
    (
        "serverless-mode-with-instance-type",
        serverless,
        _set(f"{E}.variants[0].instanceType", "ml.m5.large"),
        f"{E}.variants[0].instanceType",
        ("'ml.m5.large' must not be set when mode is serverless",),
    ),
    (
        "serverless-mode-without-serverless",
        serverless,
        lambda v: variant(v).pop("serverless"),
        f"{E}.variants[0].serverless",
        ("is required when mode is serverless",),
    ),
    (
        "serverless-with-vpc",
        serverless,
        _endpoint_update(vpc={"subnetIds": ["subnet-1"], "securityGroupIds": ["sg-1"]}),
        f"{E}.vpc",
        ("which serverless endpoints do not support",),
    ),
    (
        "serverless-with-isolation",
        serverless,
        _endpoint_update(networkIsolation=True),
        f"{E}.networkIsolation",
        ("True asks for network isolation, which serverless endpoints do not support",),
    ),
    (
        "serverless-with-data-capture",
        serverless,
        _endpoint_update(dataCapture={"samplingPercentage": 5}),
        f"{E}.dataCapture.enabled",
        ("asks for data capture",),
    ),
    (
        "serverless-two-variants",
        serverless,
        lambda v: endpoint(v)["variants"].append(dict(SERVERLESS_VARIANT, name="second")),
        f"{E}.variants",
        ("has 2 production variants, which serverless endpoints do not support",),
    ),
    # async and shadow
    (
        "async-section-on-realtime",
        minimal_dev,
        _endpoint_update(**{"async": {"successTopicArn": TOPIC}}),
        f"{E}.async",
        ("is set, but mode is realtime",),
    ),
    (
        "async-bad-topic",
        asynchronous,
        _set(f"{E}.async.errorTopicArn", "arn:aws:sqs:eu-west-1:123456789012:queue"),
        f"{E}.async.errorTopicArn",
        ("is not a valid SNS topic ARN", "(sagemaker SnsTopicArn)"),
    ),
    (
        "async-invocations-range",
        asynchronous,
        _set(f"{E}.async.maxConcurrentInvocationsPerInstance", 5000),
        f"{E}.async.maxConcurrentInvocationsPerInstance",
        ("5000 is out of range", "must be 1-1000"),
    ),
    (
        "shadow-on-async",
        asynchronous,
        _endpoint_update(shadowVariant={"name": "shadow", "instanceType": "ml.m5.large"}),
        f"{E}.shadowVariant",
        ("is set, but mode is async",),
    ),
    (
        "shadow-with-two-variants",
        a_b,
        _endpoint_update(shadowVariant={"name": "shadow", "instanceType": "ml.m5.large"}),
        f"{E}.shadowVariant",
        ("is set with 2 production variants",),
    ),
    # data capture
    (
        "sampling-101",
        minimal_dev,
        _endpoint_update(dataCapture={"samplingPercentage": 101}),
        f"{E}.dataCapture.samplingPercentage",
        ("101 is out of range: the sampling percentage must be 0-100 (sagemaker DataCaptureConfig",),
    ),
    (
        "sampling-missing",
        minimal_dev,
        _endpoint_update(dataCapture={"enabled": True}),
        f"{E}.dataCapture.samplingPercentage",
        ("is required: share of requests captured, 0-100",),
    ),
    # deployment
    (
        "canary-60",
        minimal_dev,
        _endpoint_update(deployment={"strategy": "canary", "canaryPercent": 60}),
        f"{E}.deployment.canaryPercent",
        ("60 is out of range: the canary size in % must be 1-50",),
    ),
    (
        "linear-step-5",
        minimal_dev,
        _endpoint_update(deployment={"strategy": "linear", "linearStepPercent": 5}),
        f"{E}.deployment.linearStepPercent",
        ("5 is out of range: the linear step in % must be 10-50",),
    ),
    (
        "canary-without-size",
        minimal_dev,
        _endpoint_update(deployment={"strategy": "canary"}),
        f"{E}.deployment.canaryPercent",
        ("is required when strategy is canary",),
    ),
    (
        "size-for-other-strategy",
        minimal_dev,
        _endpoint_update(deployment={"strategy": "linear", "linearStepPercent": 20, "canaryPercent": 10}),
        f"{E}.deployment.canaryPercent",
        ("10 only applies to strategy canary, but strategy is linear",),
    ),
    (
        "unknown-strategy",
        minimal_dev,
        _endpoint_update(deployment={"strategy": "rolling"}),
        f"{E}.deployment.strategy",
        ("'rolling' is not one of all_at_once, canary, linear",),
    ),
    (
        "eleven-rollback-alarms",
        minimal_dev,
        _endpoint_update(deployment={"rollbackAlarms": [f"alarm-{i}" for i in range(11)]}),
        f"{E}.deployment.rollbackAlarms",
        (
            "[11 entries] makes 12 rollback alarms",
            "combined in the endpoint's one composite rollback alarm",
            "SageMaker's limit of 1-10 (sagemaker AutoRollbackConfig.Alarms)",
        ),
    ),
    (
        "rollback-alarms-without-rollback",
        minimal_dev,
        _endpoint_update(deployment={"rollbackOnAlarms": False, "rollbackAlarms": ["kpi"]}),
        f"{E}.deployment.rollbackAlarms",
        ("rollbackOnAlarms is false",),
    ),
    (
        "wait-interval-range",
        minimal_dev,
        _endpoint_update(deployment={"waitIntervalSeconds": 7200}),
        f"{E}.deployment.waitIntervalSeconds",
        ("7200 is out of range", "0-3600 (sagemaker TrafficRoutingConfig.WaitIntervalInSeconds)"),
    ),
    (
        "timeout-shorter-than-waits",
        minimal_dev,
        _endpoint_update(
            deployment={"strategy": "linear", "linearStepPercent": 25, "maximumExecutionTimeoutSeconds": 1200}
        ),
        f"{E}.deployment.maximumExecutionTimeoutSeconds",
        ("1200 does not outlast the deployment's own waiting (4 x waitIntervalSeconds", "= 1200 s"),
    ),
    # a rollout fits the provider's 60-minute endpoint waiter and the CI role's one-hour session
    (
        "rollout-over-the-waiter-budget",
        minimal_dev,
        _endpoint_update(deployment={"strategy": "linear", "linearStepPercent": 10}),
        f"{E}.deployment",
        (
            "3900 seconds is what one rollout takes: provisioningSeconds 900 + 10 x waitIntervalSeconds 300 + "
            "terminationWaitSeconds 0 = 3900 s, over the 2700 s budget",
            "the provider's endpoint waiter gives up after 3600 s",
            "the CI role's session lasts 3600 s",
        ),
    ),
    (
        "slow-provisioning-over-the-budget",
        minimal_dev,
        _endpoint_update(deployment={"provisioningSeconds": 2400, "terminationWaitSeconds": 600}),
        f"{E}.deployment",
        ("provisioningSeconds 2400 + 1 x waitIntervalSeconds 300 + terminationWaitSeconds 600 = 3300 s",),
    ),
    (
        "deployment-timeout-over-the-waiter-budget",
        minimal_dev,
        _endpoint_update(deployment={"maximumExecutionTimeoutSeconds": 3600}),
        f"{E}.deployment.maximumExecutionTimeoutSeconds",
        ("3600 lets SageMaker roll out for longer than the 2700 s budget", "between the rollout's 1200 s"),
    ),
    (
        "provisioning-allowance-range",
        minimal_dev,
        _endpoint_update(deployment={"provisioningSeconds": 30}),
        f"{E}.deployment.provisioningSeconds",
        ("30 is out of range: the provisioning allowance must be 60-3600",),
    ),
    (
        "inf1-with-canary",
        minimal_dev,
        _both(
            _set(f"{E}.variants[0].instanceType", "ml.inf1.xlarge"),
            _endpoint_update(deployment={"strategy": "canary", "canaryPercent": 10}),
        ),
        f"{E}.deployment.strategy",
        ("'canary' cannot shift traffic gradually to variants[0] (ml.inf1.xlarge)",),
    ),
    # autoscaling
    (
        "min-above-max",
        a_b,
        lambda v: endpoint(v)["autoscaling"].update(minInstances=4, maxInstances=2),
        f"{E}.autoscaling.maxInstances",
        ("2 is below minInstances (4)",),
    ),
    (
        "no-scaling-target",
        a_b,
        lambda v: endpoint(v)["autoscaling"].pop("targetConcurrentRequestsPerModel"),
        f"{E}.autoscaling.targetInvocationsPerInstance",
        (
            "is required: a realtime endpoint scales on targetInvocationsPerInstance or "
            "targetConcurrentRequestsPerModel",
        ),
    ),
    (
        "two-scaling-targets",
        a_b,
        lambda v: endpoint(v)["autoscaling"].update(targetInvocationsPerInstance=100),
        f"{E}.autoscaling.targetConcurrentRequestsPerModel",
        ("is set together with targetInvocationsPerInstance",),
    ),
    (
        "target-for-other-mode",
        a_b,
        lambda v: endpoint(v)["autoscaling"].update(targetBacklogPerInstance=3),
        f"{E}.autoscaling.targetBacklogPerInstance",
        ("3.0 does not apply to mode realtime",),
    ),
    (
        "zero-target",
        a_b,
        lambda v: endpoint(v)["autoscaling"].update(targetConcurrentRequestsPerModel=0),
        f"{E}.autoscaling.targetConcurrentRequestsPerModel",
        ("0 must be greater than 0",),
    ),
    (
        "initial-count-outside-bounds",
        a_b,
        _set(f"{E}.variants[0].initialInstanceCount", 5),
        f"{E}.variants[0].initialInstanceCount",
        ("5 is outside autoscaling's 1-3",),
    ),
    (
        "negative-cooldown",
        a_b,
        lambda v: endpoint(v)["autoscaling"].update(scaleInCooldownSeconds=-5),
        f"{E}.autoscaling.scaleInCooldownSeconds",
        ("-5 is out of range: a cooldown must be >= 0",),
    ),
    (
        "instances-on-serverless",
        serverless,
        lambda v: endpoint(v)["autoscaling"].update(minInstances=1),
        f"{E}.autoscaling.minInstances",
        ("does not apply to serverless endpoints",),
    ),
    (
        "serverless-max-above-concurrency",
        serverless,
        lambda v: endpoint(v)["autoscaling"].update(maxProvisionedConcurrency=50),
        f"{E}.autoscaling.maxProvisionedConcurrency",
        ("50 exceeds variants[0].serverless.maxConcurrency (20)",),
    ),
    (
        "serverless-utilization-range",
        serverless,
        lambda v: endpoint(v)["autoscaling"].update(targetProvisionedConcurrencyUtilization=70),
        f"{E}.autoscaling.targetProvisionedConcurrencyUtilization",
        ("70 is out of range", "0.1-1.0"),
    ),
    (
        "bad-schedule-expression",
        full_prod,
        _set(f"{E}.autoscaling.schedules[0].schedule", "every day at 7"),
        f"{E}.autoscaling.schedules[0].schedule",
        ("'every day at 7' is not an Application Auto Scaling schedule",),
    ),
    (
        "schedule-unknown-timezone",
        full_prod,
        _set(f"{E}.autoscaling.schedules[0].timezone", "Europe/Amsterdamm"),
        f"{E}.autoscaling.schedules[0].timezone",
        ("'Europe/Amsterdamm' is not an IANA time zone; did you mean Europe/Amsterdam",),
    ),
    (
        "schedule-min-above-max",
        full_prod,
        _set(f"{E}.autoscaling.schedules[1].minCapacity", 6),
        f"{E}.autoscaling.schedules[1].maxCapacity",
        ("4 is below the same schedule's minCapacity (6)",),
    ),
    (
        "schedule-name-repeats",
        full_prod,
        _set(f"{E}.autoscaling.schedules[1].name", "business-hours"),
        f"{E}.autoscaling.schedules[1].name",
        ("'business-hours' repeats an earlier schedule's name",),
    ),
    # environment rules
    (
        "prod-with-one-instance",
        full_prod,
        lambda v: endpoint(v).pop("autoscaling") and variant(v).update(initialInstanceCount=1),
        f"{E}.variants[0].initialInstanceCount",
        ("1 is too few for prod: each production variant needs at least 2 instances",),
    ),
    (
        "prod-autoscaling-min-one",
        full_prod,
        _both(
            lambda v: endpoint(v)["autoscaling"].update(minInstances=1),
            _set(f"{E}.variants[0].initialInstanceCount", 1),
        ),
        f"{E}.autoscaling.minInstances",
        ("1 is too few for prod",),
    ),
    (
        "prod-without-deployment",
        full_prod,
        lambda v: endpoint(v).pop("deployment"),
        f"{E}.deployment",
        ("is required in prod",),
    ),
    (
        "prod-without-rollback",
        full_prod,
        lambda v: endpoint(v)["deployment"].update(rollbackOnAlarms=False, rollbackAlarms=[]),
        f"{E}.deployment.rollbackOnAlarms",
        ("False must be true in prod",),
    ),
    (
        "staging-without-autoscaling",
        a_b,
        lambda v: endpoint(v).pop("autoscaling"),
        f"{E}.autoscaling",
        ("is required for a real-time endpoint in staging",),
    ),
    (
        "prod-force-destroy",
        full_prod,
        _set("model-deploy:aws.store.forceDestroy", True),
        "model-deploy:aws.store.forceDestroy",
        ("True is not allowed in prod",),
    ),
    # store
    (
        "bad-bucket-name",
        minimal_dev,
        _set("model-deploy:aws.store", {"bucketName": "Acme_Models"}),
        "model-deploy:aws.store.bucketName",
        ("'Acme_Models' is not a valid S3 bucket name: use 3-63 lowercase letters",),
    ),
    (
        "referenced-store-without-bucket",
        minimal_dev,
        _set("model-deploy:aws.store", {"create": False, "kmsKeyArn": KMS_KEY}),
        "model-deploy:aws.store.bucketName",
        ("is required when store.create is false",),
    ),
    (
        "referenced-store-without-key",
        minimal_dev,
        _set("model-deploy:aws.store", {"create": False, "bucketName": "acme-models"}),
        "model-deploy:aws.store.kmsKeyArn",
        ("is required when store.create is false",),
    ),
    (
        "kms-alias-instead-of-key",
        minimal_dev,
        _set("model-deploy:aws.store", {"kmsKeyArn": "arn:aws:kms:eu-west-1:123456789012:alias/models"}),
        "model-deploy:aws.store.kmsKeyArn",
        ("is not a KMS key ARN", "not an alias"),
    ),
    (
        "repository-differs-from-image",
        minimal_dev,
        _set("model-deploy:aws.store", {"repositoryName": "other-repo"}),
        "model-deploy:aws.store.repositoryName",
        ("'other-repo' differs from the image's repository 'model-serve'",),
    ),
    (
        "repository-name-pattern",
        minimal_dev,
        _set("model-deploy:aws.store", {"repositoryName": "Model_Serve"}),
        "model-deploy:aws.store.repositoryName",
        ("is not a valid ECR repository name", "(ecr CreateRepositoryRequest.repositoryName)"),
    ),
    (
        "expiration-zero",
        minimal_dev,
        _set("model-deploy:aws.store", {"noncurrentVersionExpirationDays": 0}),
        "model-deploy:aws.store.noncurrentVersionExpirationDays",
        ("0 is too small",),
    ),
    # VPC
    (
        "subnet-without-prefix",
        vpc,
        _set(f"{E}.vpc.subnetIds[0]", "0a1b2c3d"),
        f"{E}.vpc.subnetIds[0]",
        ("'0a1b2c3d' is not a subnet id: expected an id starting with 'subnet-'",),
    ),
    (
        "seventeen-subnets",
        vpc,
        _set(f"{E}.vpc.subnetIds", [f"subnet-{i}" for i in range(17)]),
        f"{E}.vpc.subnetIds",
        ("[17 entries] are too many: subnets must number 1-16 (sagemaker VpcConfig.Subnets)",),
    ),
    (
        "six-security-groups",
        vpc,
        _set(f"{E}.vpc.securityGroupIds", [f"sg-{i}" for i in range(6)]),
        f"{E}.vpc.securityGroupIds",
        ("are too many: security groups must number 1-5",),
    ),
    # alarms and logs
    (
        "error-rate-above-100",
        minimal_dev,
        _endpoint_update(alarms={"errorRate4xxPercent": 150}),
        f"{E}.alarms.errorRate4xxPercent",
        ("150 is not a percentage",),
    ),
    (
        "evaluation-periods-zero",
        minimal_dev,
        _endpoint_update(alarms={"evaluationPeriods": 0}),
        f"{E}.alarms.evaluationPeriods",
        ("0 is out of range", "(cloudwatch PutMetricAlarmInput.EvaluationPeriods)"),
    ),
    (
        "log-retention-10",
        minimal_dev,
        _set("model-deploy:aws.logRetentionDays", 10),
        "model-deploy:aws.logRetentionDays",
        ("10 is not a CloudWatch Logs retention period: use one of 1, 3, 5, 7, 14, 30",),
    ),
    # tags
    (
        "tag-key-aws-prefix",
        minimal_dev,
        _set("model-deploy:tags", {"aws:owner": "me"}),
        'model-deploy:tags["aws:owner"]',
        ("'aws:owner' is not a valid tag key: the 'aws:' prefix is reserved",),
    ),
    (
        "tag-value-too-long",
        minimal_dev,
        _set("model-deploy:tags", {"owner": "x" * 257}),
        "model-deploy:tags.owner",
        ("is not a valid tag value: it must be 1-256 characters long, not 257",),
    ),
    (
        "tag-value-bad-character",
        minimal_dev,
        _set("model-deploy:tags", {"owner": "me & you"}),
        "model-deploy:tags.owner",
        ("'me & you' is not a valid tag value: it must match the pattern",),
    ),
    (
        "tag-overrides-standard",
        minimal_dev,
        _set("model-deploy:tags", {"environment": "qa"}),
        "model-deploy:tags.environment",
        ("'qa' sets tag 'environment', which the stack sets itself",),
    ),
    (
        "too-many-tags",
        minimal_dev,
        _set("model-deploy:tags", {f"tag{i}": "v" for i in range(45)}),
        "model-deploy:tags",
        ("makes 51 tags with the stack's own 6; AWS allows 0-50 per resource", "so set at most 44"),
    ),
    (
        "batch-jobs-not-a-boolean",
        minimal_dev,
        _endpoint_update(batchJobs="sometimes"),
        f"{E}.batchJobs",
        ("'sometimes'",),
    ),
    # secrets
    (
        "secret-in-project-namespace",
        minimal_dev,
        _set("model-deploy:package.version", {"secure": "v1:AAAA"}),
        "model-deploy:package.version",
        ("is a Pulumi secret", "set it in plain text"),
    ),
]


@pytest.mark.parametrize(
    ("start", "mutate", "key", "fragments"),
    [
        pytest.param(
            start,
            mutate,
            key,
            fragments,
            id=name,
            marks=[NEEDS_TZDATA] if "timezone" in name else [],
        )
        for name, start, mutate, key, fragments in BAD_CASES
    ],
)
def test_bad_value_names_key_value_and_what_is_allowed(
    start: Callable[[], Values], mutate: Mutation, key: str, fragments: tuple[str, ...]
) -> None:
    values = copy.deepcopy(start())
    stack = values["model-deploy:environment"]
    _load(values, stack)  # the starting point itself is valid
    mutate(values)
    with pytest.raises(ConfigError) as caught:
        _load(values, stack)
    error = caught.value
    message = str(error)
    assert "\n" not in message
    assert error.key == key, message
    assert message.startswith(f"{key}: "), message
    for fragment in fragments:
        assert fragment in message, message


def test_every_problem_is_reported_and_counted() -> None:
    values = full_prod()
    endpoint(values).pop("deployment")
    endpoint(values).pop("autoscaling")
    variant(values).update(initialInstanceCount=1)
    with pytest.raises(ConfigError) as caught:
        _load(values, "prod")
    assert str(caught.value).endswith("(and 2 more problems)")
    assert [problem.key for problem in caught.value.problems] == [
        f"{E}.variants[0].initialInstanceCount",
        f"{E}.deployment",
        f"{E}.autoscaling",
    ]


def test_schema_problems_are_counted_too() -> None:
    values = minimal_dev()
    values["model-deploy:environment"] = "qa"
    values["aws:region"] = "mars-1"
    with pytest.raises(ConfigError, match=r"^model-deploy:environment: 'qa' .* \(and 1 more problems\)$"):
        _load(values)


def test_other_namespaces_and_unnamespaced_keys() -> None:
    values = minimal_dev()
    values["aws:profile"] = "whatever"
    values["gcp:project"] = {"secure": "v1:ignored"}  # another namespace's secret: not ours to read
    values["gitRevision"] = "abc1234"  # no namespace: the project's, as in a stack file
    assert _load(values).git_revision == "abc1234"


def test_gcp_stack_has_no_aws_settings() -> None:
    values = minimal_dev()
    values.pop("model-deploy:aws")
    values.pop("aws:region")
    values["model-deploy:cloud"] = "gcp"
    values["model-deploy:package"]["uri"] = f"gs://acme-models/digits/{DIGEST}/model.tar.gz"
    values["model-deploy:package"]["image"] = (
        "europe-west4-docker.pkg.dev/acme-ml/model-serve/serve@sha256:" + "ab" * 32
    )
    values["model-deploy:gcp"] = {
        "project": "acme-ml",
        "region": "europe-west4",
        "target": "cloudrun",
        "store": {"repository": {"name": "model-serve"}},
        "cloudRun": {"serviceName": "digits"},
    }
    config = _load(values)
    assert config.gcp is not None and config.aws is None
    with pytest.raises(ConfigError, match=r"^model-deploy:aws: is required to deploy to AWS$"):
        config.require_aws()


# --- stack files -------------------------------------------------------------------------------------------


def _write_stack(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


STACK_FILE = f"""\
encryptionsalt: v1:abcdef==
config:
  aws:region: eu-west-1
  aws:assumeRole:
    roleArn:
      secure: v1:c2VjcmV0
  model-deploy:environment: staging
  model-deploy:cloud: aws
  model-deploy:gitRevision: 1234567
  model-deploy:tags:
    release: "1.10"
  model-deploy:package:
    name: digits
    version: "1.0.0"
    uri: {PACKAGE_URI}
    digest: {DIGEST}
    image: {IMAGE}
  model-deploy:aws:
    endpoint:
      name: digits-staging
      variants:
        - name: primary
          instanceType: ml.m5.large
          initialInstanceCount: 2
      autoscaling:
        minInstances: 2
        maxInstances: 4
        targetInvocationsPerInstance: 500
      deployment:
        strategy: linear
        linearStepPercent: 50
"""


def test_load_stack_file(tmp_path: Path) -> None:
    config = load_stack_file(_write_stack(tmp_path, "Pulumi.staging.yaml", STACK_FILE))
    # Top-level scalars stay the text in the file, as Pulumi reads them (not the int 1234567).
    assert (config.stack, config.environment, config.git_revision) == ("staging", "staging", "1234567")
    assert config.tags == {"release": "1.10"}
    deployment = config.require_aws().endpoint.deployment
    assert deployment is not None and deployment.linear_step_percent == 50


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("stack.yaml", "config: {}\n", "is not a stack file: expected a name like Pulumi.<stack>.yaml"),
        ("Pulumi.dev.yaml", "config: [oops\n", "is not valid YAML"),
        ("Pulumi.dev.yaml", "- a list\n", "must hold a YAML mapping with a config: section"),
        ("Pulumi.dev.yaml", "config: just-a-string\n", "config: 'just-a-string' must be a mapping"),
        ("Pulumi.dev.yaml", "", "model-deploy:environment: is required"),
        (
            "Pulumi.staging.yaml",
            STACK_FILE.replace("instanceType: ml.m5.large", "instanceType: ml.m5.larg"),
            "model-deploy:aws.endpoint.variants[0].instanceType: 'ml.m5.larg' is not a SageMaker real-time",
        ),
        (
            "Pulumi.staging.yaml",
            STACK_FILE.replace("gitRevision: 1234567", "gitRevision:\n    secure: v1:AAAA"),
            "model-deploy:gitRevision: is a Pulumi secret",
        ),
    ],
)
def test_bad_stack_files(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = _write_stack(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        load_stack_file(path)
    assert message in str(caught.value)


def test_missing_stack_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"Pulumi\.prod\.yaml: cannot be read"):
        load_stack_file(tmp_path / "Pulumi.prod.yaml")


# --- from_pulumi -------------------------------------------------------------------------------------------


class _NoResources(pulumi.runtime.Mocks):
    """Config loading declares no resources; the mocks only give the program a project and stack."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


@pytest.fixture
def pulumi_program() -> Iterator[Callable[[Values], None]]:
    """Run as a Pulumi program of stack ``staging``; the returned function sets its config."""
    pulumi.runtime.set_mocks(_NoResources(), project="model-deploy", stack="staging", preview=False)

    def configure(values: Values) -> None:
        # The engine hands a program its config as strings; objects arrive JSON-encoded.
        pulumi.runtime.set_all_config(
            {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
        )

    yield configure
    pulumi.runtime.set_all_config({})


def test_from_pulumi_reads_the_running_programs_config(pulumi_program: Callable[[Values], None]) -> None:
    values = a_b()
    values["model-deploy:tags"] = {"team": "ml"}
    values["aws:skipCredentialsValidation"] = "true"
    pulumi_program(values)
    config = from_pulumi()
    assert (config.stack, config.environment, config.region) == ("staging", "staging", "eu-west-1")
    assert config.tags == {"team": "ml"}
    assert [v.name for v in config.require_aws().endpoint.variants] == ["champion", "challenger"]


def test_from_pulumi_reports_misspelled_keys(pulumi_program: Callable[[Values], None]) -> None:
    values = a_b()
    values["model-deploy:gitRevison"] = "abc"
    pulumi_program(values)
    with pytest.raises(ConfigError, match=r"^model-deploy:gitRevison: is not a known key; did you mean "):
        from_pulumi()


def test_from_pulumi_reports_objects_that_are_not_json(pulumi_program: Callable[[Values], None]) -> None:
    values = a_b()
    values["model-deploy:aws"] = "endpoint: digits"
    pulumi_program(values)
    with pytest.raises(ConfigError, match=r"^model-deploy:aws: 'endpoint: digits' must be a JSON/YAML object"):
        from_pulumi()


# --- the limits come from botocore -------------------------------------------------------------------------


def _doc(service: str, ref: str) -> str:
    model = botocore.session.get_session().get_service_model(service)
    shape_name, _, member = ref.partition(".")
    shape = model.shape_for(shape_name)
    text: str = (shape.members[member] if member else shape).documentation
    return re.sub(r"<[^>]+>", "", text)


def test_limits_are_botocores() -> None:
    limits = aws_limits()
    assert "ml.m5.large" in limits.instance_types and "ml.g5.xlarge" in limits.instance_types
    assert "ml.m5" in limits.instance_families and "ml.m5.large" not in limits.instance_families
    assert (limits.production_variants.minimum, limits.production_variants.maximum) == (1, 10)
    assert limits.serverless_memory_sizes_mb == (1024, 2048, 3072, 4096, 5120, 6144)
    assert (limits.rollback_alarms.minimum, limits.rollback_alarms.maximum) == (1, 10)
    assert limits.sampling_percentage.text == "0-100"
    assert "eu-west-1" in limits.sagemaker_regions and "us-gov-west-1" in limits.sagemaker_regions
    assert "sagemaker:variant:DesiredProvisionedConcurrency" in limits.scalable_dimensions
    assert {
        "SageMakerVariantInvocationsPerInstance",
        "SageMakerVariantProvisionedConcurrencyUtilization",
        "SageMakerVariantConcurrentRequestsPerModelHighResolution",
    } <= set(limits.predefined_metrics)


def test_prose_only_limits_still_match_botocores_documentation() -> None:
    """The few limits botocore states only in prose: fail here when AWS rewords or changes them."""
    assert "1 GB increments" in _doc("sagemaker", "ProductionVariantServerlessConfig.MemorySizeInMB")
    assert f"less than or equal to {CANARY_MAX_PERCENT}%" in _doc("sagemaker", "TrafficRoutingConfig.CanarySize")
    low, high = LINEAR_STEP_PERCENT
    assert f"{low}-{high}%" in _doc("sagemaker", "TrafficRoutingConfig.LinearStepSize")
    retention = _doc("logs", "PutRetentionPolicyRequest.retentionInDays")
    listed = tuple(int(day) for day in re.findall(r"\d+", retention.partition("Possible values are:")[2]))
    assert listed == LOG_RETENTION_DAYS
    model = botocore.session.get_session().get_service_model("logs")
    assert "enum" not in model.shape_for("Days").metadata  # if AWS adds one, read it instead of the list
