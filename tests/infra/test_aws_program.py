"""The AWS program, run for real (``infra/__main__.py``) under Pulumi's mocks with the real pulumi_aws SDK.

Each scenario is a whole stack config; the assertions are on what a platform engineer relies on:
encryption, public access, IAM statements (parsed), the update-safe naming of the endpoint config,
rollout and rollback, autoscaling ids and dimensions, alarm dimensions and units, tags, dependency
edges and outputs. A last test runs ``pulumi preview`` and is skipped where the CLI is missing.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from infra.aws.autoscaling import (
    CONCURRENT_REQUESTS_PER_MODEL,
    INVOCATIONS_PER_INSTANCE,
    PROVISIONED_CONCURRENCY_UTILIZATION,
)
from infra.aws.capacity import LIVE_COUNTS_VARIABLE
from infra.aws.endpoint import has_instance_storage
from infra.aws.iam import UNSCOPABLE_ACTIONS, statement_actions, statement_resources, wildcard_grants
from infra.aws.monitoring import rollback_expression
from infra.aws.naming import CONFIG_KIND, MODEL_KIND, child_name, invoke_url, partition
from infra.config import AlarmSettings, aws_limits, load_stack_config
from infra.config.aws_rules import MAX_ROLLBACK_VARIANTS
from tests.infra.aws_stacks import (
    DIGEST,
    IMAGE,
    KMS_KEY,
    PACKAGE_PREFIX,
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
from tests.infra.mocks import (
    ACCOUNT_ID,
    Deployment,
    RecordingMocks,
    RecordingMonitor,
    Registered,
    json_input,
    run_program,
)

ROOT = Path(__file__).resolve().parents[2]

# Pulumi type tokens.
BUCKET = "aws:s3/bucket:Bucket"
KEY = "aws:kms/key:Key"
REPOSITORY = "aws:ecr/repository:Repository"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MODEL = "aws:sagemaker/model:Model"
ENDPOINT_CONFIG = "aws:sagemaker/endpointConfiguration:EndpointConfiguration"
ENDPOINT = "aws:sagemaker/endpoint:Endpoint"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
SCHEDULE = "aws:appautoscaling/scheduledAction:ScheduledAction"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
COMPOSITE_ALARM = "aws:cloudwatch/compositeAlarm:CompositeAlarm"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
STASH = "pulumi:index:Stash"
STORE_COMPONENT = "model-deploy:aws:ArtifactStore"
ENDPOINT_COMPONENT = "model-deploy:aws:SageMakerEndpoint"


# --- stack configs ------------------------------------------------------------------------------------


def prod_canary() -> Values:
    """Prod: created store (bucket named), canary blue/green, autoscaling with schedules, data capture, SNS."""
    values = minimal_dev()
    values["model-deploy:environment"] = "prod"
    values["model-deploy:gitRevision"] = "3f2c1e9"
    values["model-deploy:tags"] = {"team": "ml-platform", "cost-center": "1234"}
    values["model-deploy:aws"] = {
        "store": {"bucketName": "acme-models", "noncurrentVersionExpirationDays": 90},
        "endpoint": {
            "name": "digits-prod",
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
                "scaleOutCooldownSeconds": 45,
                "schedules": [
                    {
                        "name": "business-hours",
                        "schedule": "cron(0 7 ? * MON-FRI *)",
                        "timezone": "UTC",
                        "minCapacity": 4,
                    },
                    {"name": "nights", "schedule": "cron(0 20 ? * MON-FRI *)", "minCapacity": 2, "maxCapacity": 4},
                ],
            },
            "alarms": {"modelLatencyP99Ms": 250, "errorRate5xxPercent": 0.5, "snsTopicArn": TOPIC},
        },
        "logRetentionDays": 365,
    }
    return values


def referenced_store() -> Values:
    """A shared artifact account's store, referenced by name and ARN; VPC and linear rollout."""
    values = prod_canary()
    values["model-deploy:aws"]["store"] = {
        "create": False,
        "bucketName": "acme-models",
        "kmsKeyArn": KMS_KEY,
        "repositoryName": "model-serve",
    }
    endpoint = values["model-deploy:aws"]["endpoint"]
    endpoint["deployment"] = {"strategy": "linear", "linearStepPercent": 25, "rollbackAlarms": []}
    return values


def a_b_shadowless() -> Values:
    """Two production variants splitting traffic 90/10, scaled on concurrency (high resolution)."""
    values = minimal_dev()
    values["model-deploy:environment"] = "staging"
    values["model-deploy:aws"]["endpoint"] = {
        "name": "digits-ab",
        "variants": [
            {"name": "champion", "instanceType": "ml.m5.large", "weight": 0.9},
            {"name": "challenger", "instanceType": "ml.c6i.large", "weight": 0.1},
        ],
        "autoscaling": {"minInstances": 1, "maxInstances": 3, "targetConcurrentRequestsPerModel": 4},
        "deployment": {"strategy": "all_at_once"},
    }
    return values


def vpc_isolated() -> Values:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"]["networkIsolation"] = True
    values["model-deploy:aws"]["endpoint"]["vpc"] = {
        "subnetIds": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
        "securityGroupIds": ["sg-0123abcd"],
    }
    return values


SCENARIOS: dict[str, tuple[Callable[[], Values], str]] = {
    "minimal_dev": (minimal_dev, "dev"),
    "prod_canary": (prod_canary, "prod"),
    "referenced_store": (referenced_store, "prod"),
    "serverless": (serverless, "staging"),
    "asynchronous": (asynchronous, "dev"),
    "a_b": (a_b_shadowless, "staging"),
    "shadow": (shadow, "dev"),
    "vpc_isolated": (vpc_isolated, "dev"),
    "uncompressed": (uncompressed, "dev"),
}


@cache
def deployed(scenario: str) -> Deployment:
    """Run the program once per scenario (the runs are deterministic, so the tests share them)."""
    values, stack = SCENARIOS[scenario]
    return run_program(values(), stack=stack)


@cache
def expected_tags(scenario: str) -> dict[str, str]:
    values, stack = SCENARIOS[scenario]
    return load_stack_config(values(), stack=stack).resource_tags


def policy_of(deployment: Deployment) -> dict[str, Any]:
    document: dict[str, Any] = json_input(deployment.one(ROLE_POLICY), "policy")
    return document


def statement(document: dict[str, Any], sid: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [s for s in document["Statement"] if s.get("Sid") == sid]
    assert len(found) == 1, f"no statement {sid}: {[s.get('Sid') for s in document['Statement']]}"
    return found[0]


def sids(document: dict[str, Any]) -> set[str]:
    return {s["Sid"] for s in document["Statement"]}


def store_key_arn(deployment: Deployment) -> str:
    created = deployment.of_type(KEY)
    return str(created[0].state["arn"]) if created else KMS_KEY


# --- the artifact store -------------------------------------------------------------------------------


def test_created_bucket_is_versioned_kms_encrypted_private_and_owner_enforced() -> None:
    deployment = deployed("prod_canary")
    bucket = deployment.one(BUCKET)
    key_arn = store_key_arn(deployment)
    assert bucket.inputs["bucket"] == "acme-models"
    assert bucket.inputs["forceDestroy"] is False

    encryption = deployment.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    (rule,) = encryption.inputs["rules"]
    assert rule["applyServerSideEncryptionByDefault"] == {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": key_arn}
    assert rule["bucketKeyEnabled"] is True
    assert rule["blockedEncryptionTypes"] == ["SSE-C"]

    block = deployment.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    for setting in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"):
        assert block.inputs[setting] is True, setting

    versioning = deployment.one("aws:s3/bucketVersioning:BucketVersioning")
    assert versioning.inputs["versioningConfiguration"]["status"] == "Enabled"
    ownership = deployment.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership.inputs["rule"]["objectOwnership"] == "BucketOwnerEnforced"

    for sub in (encryption, block, versioning, ownership):
        assert sub.inputs["bucket"] == "acme-models"
        assert sub.property_depends_on("bucket", bucket)


def test_bucket_lifecycle_expires_noncurrent_versions_after_the_configured_days() -> None:
    for scenario, days in (("minimal_dev", 30), ("prod_canary", 90)):
        deployment = deployed(scenario)
        lifecycle = deployment.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
        (rule,) = lifecycle.inputs["rules"]
        assert rule["status"] == "Enabled"
        assert rule["filter"] == {"prefix": ""}  # the whole bucket
        assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == days
        assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
        # Noncurrent-version rules need versioning first.
        assert lifecycle.depends_on(deployment.one("aws:s3/bucketVersioning:BucketVersioning"))


def test_bucket_policy_denies_plain_http_and_puts_with_another_algorithm_or_key() -> None:
    deployment = deployed("prod_canary")
    policy_resource = deployment.one("aws:s3/bucketPolicy:BucketPolicy")
    document = json_input(policy_resource, "policy")
    key_arn = store_key_arn(deployment)
    assert {s["Effect"] for s in document["Statement"]} == {"Deny"}  # the policy grants nothing

    tls = statement(document, "DenyInsecureTransport")
    assert tls["Principal"] == "*" and tls["Action"] == "s3:*"
    assert tls["Resource"] == ["arn:aws:s3:::acme-models", "arn:aws:s3:::acme-models/*"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}

    algorithm = statement(document, "DenyNonKmsEncryption")
    assert algorithm["Action"] == "s3:PutObject" and algorithm["Resource"] == "arn:aws:s3:::acme-models/*"
    assert algorithm["Condition"]["StringNotEquals"] == {"s3:x-amz-server-side-encryption": "aws:kms"}
    assert algorithm["Condition"]["Null"] == {"s3:x-amz-server-side-encryption": "false"}

    wrong_key = statement(document, "DenyOtherOrUnnamedKmsKeys")
    assert wrong_key["Condition"] == {
        "StringEquals": {"s3:x-amz-server-side-encryption": "aws:kms"},
        "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": key_arn},
    }

    # S3 rejects concurrent changes to one bucket: the policy waits for the public-access block.
    assert policy_resource.depends_on(deployment.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"))


def _condition_holds(operator: str, expected: dict[str, Any], context: dict[str, str]) -> bool:
    """IAM's semantics for the operators the bucket policy uses (every key must hold)."""
    for key, value in expected.items():
        values = value if isinstance(value, list) else [value]
        present = key in context
        if operator == "Null":
            holds = present is (values[0] == "false")
        elif operator in ("StringEquals", "Bool"):
            holds = present and context[key] in values
        elif operator == "StringNotEquals":
            holds = not present or context[key] not in values  # a missing key is "not equal"
        else:
            raise AssertionError(f"operator {operator} not modelled")
        if not holds:
            return False
    return True


def _denied(document: dict[str, Any], action: str, resource: str, context: dict[str, str]) -> bool:
    for entry in document["Statement"]:
        if entry["Effect"] != "Deny" or not any(a in (action, "s3:*") for a in statement_actions(entry)):
            continue
        if resource not in statement_resources(entry):
            continue
        if all(_condition_holds(op, keys, context) for op, keys in entry.get("Condition", {}).items()):
            return True
    return False


def test_bucket_policy_decides_puts_as_a_user_would_expect() -> None:
    deployment = deployed("prod_canary")
    document = json_input(deployment.one("aws:s3/bucketPolicy:BucketPolicy"), "policy")
    key_arn = store_key_arn(deployment)
    objects = "arn:aws:s3:::acme-models/*"
    tls = {"aws:SecureTransport": "true"}
    sse = "s3:x-amz-server-side-encryption"
    key_id = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    allowed = [
        tls,  # bucket default encryption applies the store key
        {**tls, sse: "aws:kms", key_id: key_arn},
    ]
    denied = [
        {"aws:SecureTransport": "false"},
        {**tls, sse: "AES256"},
        {**tls, sse: "aws:kms:dsse", key_id: key_arn},
        {**tls, sse: "aws:kms"},  # would fall back to the aws/s3 key
        {**tls, sse: "aws:kms", key_id: KMS_KEY.replace("1234abcd", "ffffffff")},
    ]
    for context in allowed:
        assert not _denied(document, "s3:PutObject", objects, context), context
    for context in denied:
        assert _denied(document, "s3:PutObject", objects, context), context
    assert _denied(document, "s3:GetObject", objects, {"aws:SecureTransport": "false"})
    assert not _denied(document, "s3:GetObject", objects, tls)


def test_store_key_rotates_and_its_policy_delegates_to_the_accounts_iam() -> None:
    deployment = deployed("minimal_dev")
    key = deployment.one(KEY)
    assert key.inputs["enableKeyRotation"] is True
    assert key.inputs["deletionWindowInDays"] == 30
    (root,) = json_input(key, "policy")["Statement"]
    assert root["Effect"] == "Allow"
    assert root["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"}
    alias = deployment.one("aws:kms/alias:Alias")
    assert alias.inputs["name"] == "alias/model-deploy/dev/artifacts"
    assert alias.property_depends_on("targetKeyId", key)


def test_repository_is_immutable_scanned_on_push_and_kms_encrypted() -> None:
    deployment = deployed("minimal_dev")
    repository = deployment.one(REPOSITORY)
    assert repository.inputs["name"] == "model-serve"  # the image's repository
    assert repository.inputs["imageTagMutability"] == "IMMUTABLE"
    assert repository.inputs["imageScanningConfiguration"] == {"scanOnPush": True}
    assert repository.inputs["encryptionConfigurations"] == [
        {"encryptionType": "KMS", "kmsKey": store_key_arn(deployment)}
    ]
    lifecycle = json_input(deployment.one("aws:ecr/lifecyclePolicy:LifecyclePolicy"), "policy")
    (rule,) = lifecycle["rules"]
    assert rule["selection"]["tagStatus"] == "untagged" and rule["action"] == {"type": "expire"}


def test_prod_protects_the_store_and_dev_does_not() -> None:
    for scenario, protected in (("prod_canary", True), ("minimal_dev", False)):
        deployment = deployed(scenario)
        for type_ in (BUCKET, KEY, REPOSITORY):
            assert deployment.one(type_).protect is protected, (scenario, type_)


def test_a_referenced_store_declares_nothing_and_passes_its_names_through() -> None:
    deployment = deployed("referenced_store")
    store = deployment.one(STORE_COMPONENT)
    assert not [r for r in deployment.resources if r.parent == store.urn]
    assert not deployment.of_type(BUCKET) and not deployment.of_type(KEY) and not deployment.of_type(REPOSITORY)
    assert deployment.outputs["bucketName"] == "acme-models"
    assert deployment.outputs["repositoryUrl"] == f"{REGISTRY}/model-serve"
    document = policy_of(deployment)
    assert statement(document, "DecryptWithStoreKey")["Resource"] == KMS_KEY
    assert statement(document, "PullServingImage")["Resource"] == (
        f"arn:aws:ecr:eu-west-1:{ACCOUNT_ID}:repository/model-serve"
    )
    assert deployment.one(ENDPOINT_CONFIG).inputs["kmsKeyArn"] == KMS_KEY
    # The account comes from the provider (an invoke), never from a resource lookup.
    assert deployment.calls == ["aws:index/getCallerIdentity:getCallerIdentity"]


def test_a_created_store_defaults_its_bucket_to_the_packages_bucket() -> None:
    assert deployed("minimal_dev").one(BUCKET).inputs["bucket"] == "acme-models"


# --- the execution role -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_role_policy_has_no_wildcard_grants_and_no_managed_policies(scenario: str) -> None:
    deployment = deployed(scenario)
    document = policy_of(deployment)
    assert wildcard_grants(document) == []
    for entry in document["Statement"]:
        assert entry["Effect"] == "Allow"
        for resource in statement_resources(entry):
            if resource == "*":
                assert set(statement_actions(entry)) <= UNSCOPABLE_ACTIONS
    role = deployment.one(ROLE)
    assert not role.inputs.get("managedPolicyArns")
    assert not [r for r in deployment.resources if r.type.startswith("aws:iam/rolePolicyAttachment")]
    assert deployment.one(ROLE_POLICY).property_depends_on("role", role)


def test_role_is_assumable_by_sagemaker_for_this_account_only() -> None:
    trust = json_input(deployed("minimal_dev").one(ROLE), "assumeRolePolicy")
    (entry,) = trust["Statement"]
    assert entry["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert entry["Action"] == "sts:AssumeRole"
    assert entry["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}


def test_role_may_read_the_rollback_alarm_sagemaker_watches() -> None:
    # SageMaker reads the auto-rollback alarms with the execution role (Developer Guide,
    # "Auto-Rollback Configuration and Monitoring"); without it, rollback does not work.
    read = statement(policy_of(deployed("prod_canary")), "ReadRollbackAlarm")
    assert read["Action"] == "cloudwatch:DescribeAlarms"
    assert read["Resource"] == f"arn:aws:cloudwatch:eu-west-1:{ACCOUNT_ID}:alarm:digits-prod-rollback"
    assert "ReadRollbackAlarm" not in sids(policy_of(deployed("minimal_dev")))  # no deployment, no alarm


def test_role_reads_the_pinned_package_decrypts_with_the_store_key_and_pulls_one_repository() -> None:
    deployment = deployed("minimal_dev")
    document = policy_of(deployment)
    key_arn = store_key_arn(deployment)
    assert statement(document, "ReadPinnedPackage")["Resource"] == f"arn:aws:s3:::acme-models/{PACKAGE_PREFIX}/*"
    listing = statement(document, "ListPinnedPackage")
    assert listing["Resource"] == "arn:aws:s3:::acme-models"
    assert listing["Condition"]["StringLike"]["s3:prefix"] == [PACKAGE_PREFIX, f"{PACKAGE_PREFIX}/*"]
    decrypt = statement(document, "DecryptWithStoreKey")
    assert (decrypt["Action"], decrypt["Resource"]) == ("kms:Decrypt", key_arn)
    assert decrypt["Condition"] == {"StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}}
    pull = statement(document, "PullServingImage")
    assert pull["Resource"] == f"arn:aws:ecr:eu-west-1:{ACCOUNT_ID}:repository/model-serve"
    assert set(pull["Action"]) == {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"}
    logs = statement(document, "WriteEndpointLogs")
    assert logs["Resource"] == (
        f"arn:aws:logs:eu-west-1:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/digits-dev:log-stream:*"
    )
    metrics = statement(document, "PutEndpointMetrics")
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": ["/aws/sagemaker/Endpoints"]}}
    # Nothing to write: no PutObject and no data keys.
    assert not {"WriteDataCapture", "EncryptStoreWrites", "WriteAsyncResults", "VpcDescribe"} & sids(document)
    assert all("s3:PutObject" not in statement_actions(entry) for entry in document["Statement"])


def test_role_writes_data_capture_to_its_own_prefix_with_data_keys() -> None:
    document = policy_of(deployed("prod_canary"))
    assert statement(document, "WriteDataCapture")["Resource"] == "arn:aws:s3:::acme-models/data-capture/digits-prod/*"
    assert statement(document, "EncryptStoreWrites")["Action"] == "kms:GenerateDataKey"


def test_role_reads_async_inputs_writes_results_and_publishes_to_the_topics() -> None:
    document = policy_of(deployed("asynchronous"))
    assert statement(document, "ReadAsyncInputs")["Resource"] == "arn:aws:s3:::acme-models/async/digits-async/input/*"
    assert statement(document, "WriteAsyncResults")["Resource"] == [
        "arn:aws:s3:::acme-models/async/digits-async/output/*",
        "arn:aws:s3:::acme-models/async/digits-async/failure/*",
    ]
    assert statement(document, "PublishAsyncNotifications")["Resource"] == [TOPIC]
    assert "EncryptStoreWrites" in sids(document)


def test_role_may_manage_network_interfaces_in_the_configured_subnets_only() -> None:
    document = policy_of(deployed("vpc_isolated"))
    subnets = [f"arn:aws:ec2:eu-west-1:{ACCOUNT_ID}:subnet/{s}" for s in ("subnet-0a1b2c3d", "subnet-4e5f6a7b")]
    create = statement(document, "VpcCreateEniInConfiguredSubnets")
    assert create["Resource"] == [*subnets, f"arn:aws:ec2:eu-west-1:{ACCOUNT_ID}:security-group/sg-0123abcd"]
    for sid in ("VpcCreateEni", "VpcManageEnisInConfiguredSubnets"):
        entry = statement(document, sid)
        assert entry["Resource"] == f"arn:aws:ec2:eu-west-1:{ACCOUNT_ID}:network-interface/*"
        assert entry["Condition"] == {"ArnEquals": {"ec2:Subnet": subnets}}
    describe = statement(document, "VpcDescribe")
    assert describe["Resource"] == "*" and all(a.startswith("ec2:Describe") for a in describe["Action"])


def test_the_wildcard_check_catches_what_it_is_for() -> None:
    document = {
        "Statement": [
            {"Sid": "A", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
            {"Sid": "B", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "*"},
            {"Sid": "C", "Effect": "Deny", "Action": "*", "Resource": "*"},
        ]
    }
    assert wildcard_grants(document) == [
        "A: wildcard action 's3:*'",
        "B: s3:GetObject on '*' although IAM can scope it",
    ]


# --- the model ------------------------------------------------------------------------------------------


def test_model_runs_the_image_by_digest_on_the_archive_with_network_isolation() -> None:
    deployment = deployed("minimal_dev")
    model = deployment.one(MODEL)
    container = model.inputs["primaryContainer"]
    assert container["image"] == IMAGE and "@sha256:" in container["image"]
    assert container["modelDataUrl"] == PACKAGE_URI
    assert "modelDataSource" not in container
    assert container["environment"] == {"MODEL_PACKAGE_DIGEST": DIGEST, "SAGEMAKER_CONTAINER_LOG_LEVEL": "20"}
    assert model.inputs["enableNetworkIsolation"] is True
    assert "vpcConfig" not in model.inputs
    assert "name" not in model.inputs  # auto-named: a changed model is a new model
    assert model.property_depends_on("executionRoleArn", deployment.one(ROLE))
    # CreateModel checks the role can read the package: the policy comes first.
    assert model.depends_on(deployment.one(ROLE_POLICY))


def test_serving_settings_reach_the_container_environment() -> None:
    values = minimal_dev()
    values["model-deploy:serving"] = {"workers": "auto", "maxBatchSize": 32, "logLevel": "WARNING"}
    container = run_program(values, stack="dev").one(MODEL).inputs["primaryContainer"]
    assert container["environment"] == {
        "MODEL_PACKAGE_DIGEST": DIGEST,
        "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
        "MODEL_SERVER_WORKERS": "auto",
        "MODEL_SERVER_MAX_BATCH_SIZE": "32",
        "MODEL_SERVER_LOG_LEVEL": "WARNING",  # read before SAGEMAKER_CONTAINER_LOG_LEVEL
    }


def test_model_reads_the_uncompressed_layout_as_an_s3_prefix() -> None:
    container = deployed("uncompressed").one(MODEL).inputs["primaryContainer"]
    assert "modelDataUrl" not in container
    assert container["modelDataSource"] == {
        "s3DataSources": [
            {"s3Uri": f"s3://acme-models/{PACKAGE_PREFIX}/", "s3DataType": "S3Prefix", "compressionType": "None"}
        ]
    }


def test_model_in_a_vpc_keeps_network_isolation() -> None:
    model = deployed("vpc_isolated").one(MODEL)
    assert model.inputs["enableNetworkIsolation"] is True
    assert model.inputs["vpcConfig"] == {
        "subnets": ["subnet-0a1b2c3d", "subnet-4e5f6a7b"],
        "securityGroupIds": ["sg-0123abcd"],
    }


def test_serverless_and_async_containers_get_their_platform_limits() -> None:
    sls = deployed("serverless").one(MODEL)
    assert sls.inputs["primaryContainer"]["environment"]["MODEL_SERVER_MAX_REQUEST_BYTES"] == str(4 * 1024 * 1024)
    assert sls.inputs["enableNetworkIsolation"] is False  # serverless endpoints lack it
    env = deployed("asynchronous").one(MODEL).inputs["primaryContainer"]["environment"]
    assert env["MODEL_SERVER_MAX_REQUEST_BYTES"] == str(1024 * 1024 * 1024)
    assert float(env["MODEL_SERVER_REQUEST_TIMEOUT_S"]) < 3600


# --- the endpoint configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_endpoint_config_is_auto_named_so_every_change_is_a_new_config(scenario: str) -> None:
    deployment = deployed(scenario)
    config = deployment.one(ENDPOINT_CONFIG)
    assert "name" not in config.inputs and "namePrefix" not in config.inputs
    assert not config.delete_before_replace  # the new config exists before the old one goes
    endpoint = deployment.one(ENDPOINT)
    assert endpoint.inputs["endpointConfigName"] == config.state["name"]
    assert endpoint.property_depends_on("endpointConfigName", config)
    assert deployment.outputs["endpointConfigName"] == config.state["name"]
    model = deployment.one(MODEL)
    for variant in config.inputs["productionVariants"]:
        assert variant["modelName"] == model.state["name"]
    assert config.property_depends_on("productionVariants", model)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_superseded_models_and_configs_are_kept_for_a_rollback(scenario: str) -> None:
    """After a SageMaker auto-rollback the endpoint still runs the old config and model: never delete them."""
    deployment = deployed(scenario)
    retained = sorted(resource.type for resource in deployment.custom() if resource.retain_on_delete)
    assert retained == sorted([MODEL, ENDPOINT_CONFIG])
    # model-deploy-cleanup finds them again by these name prefixes (Pulumi adds "-<7 hex>").
    endpoint_name = deployment.one(ENDPOINT).inputs["name"]
    assert deployment.one(MODEL).state["name"].startswith(f"{child_name(endpoint_name, MODEL_KIND)}-")
    assert deployment.one(ENDPOINT_CONFIG).state["name"].startswith(f"{child_name(endpoint_name, CONFIG_KIND)}-")


def test_endpoint_config_splits_traffic_by_weight() -> None:
    variants = deployed("a_b").one(ENDPOINT_CONFIG).inputs["productionVariants"]
    assert [(v["variantName"], v["instanceType"], v["initialVariantWeight"]) for v in variants] == [
        ("champion", "ml.m5.large", 0.9),
        ("challenger", "ml.c6i.large", 0.1),
    ]
    assert all(v["initialInstanceCount"] == 1 for v in variants)


def test_endpoint_config_mirrors_traffic_to_a_shadow_variant() -> None:
    config = deployed("shadow").one(ENDPOINT_CONFIG)
    (shadow_variant,) = config.inputs["shadowProductionVariants"]
    assert (shadow_variant["variantName"], shadow_variant["instanceType"]) == ("shadow", "ml.m5.xlarge")
    assert shadow_variant["modelName"] == config.inputs["productionVariants"][0]["modelName"]


def test_serverless_variant_has_memory_concurrency_and_no_instances() -> None:
    config = deployed("serverless").one(ENDPOINT_CONFIG)
    (variant,) = config.inputs["productionVariants"]
    assert variant["serverlessConfig"] == {"memorySizeInMb": 2048, "maxConcurrency": 20, "provisionedConcurrency": 2}
    assert "instanceType" not in variant and "initialInstanceCount" not in variant
    assert "asyncInferenceConfig" not in config.inputs and "dataCaptureConfig" not in config.inputs


def test_async_config_writes_results_and_failures_under_the_store_encrypted_and_notifies() -> None:
    deployment = deployed("asynchronous")
    config = deployment.one(ENDPOINT_CONFIG)
    output = config.inputs["asyncInferenceConfig"]["outputConfig"]
    assert output["s3OutputPath"] == "s3://acme-models/async/digits-async/output/"
    assert output["s3FailurePath"] == "s3://acme-models/async/digits-async/failure/"
    assert output["kmsKeyId"] == store_key_arn(deployment)
    assert output["notificationConfig"] == {"successTopic": TOPIC, "errorTopic": TOPIC}
    assert config.inputs["asyncInferenceConfig"]["clientConfig"] == {"maxConcurrentInvocationsPerInstance": 4}


def test_data_capture_goes_to_the_store_encrypted_with_the_store_key() -> None:
    deployment = deployed("prod_canary")
    capture = deployment.one(ENDPOINT_CONFIG).inputs["dataCaptureConfig"]
    assert capture["destinationS3Uri"] == "s3://acme-models/data-capture/digits-prod/"
    assert capture["kmsKeyId"] == store_key_arn(deployment)
    assert capture["enableCapture"] is True and capture["initialSamplingPercentage"] == 10
    assert capture["captureOptions"] == [{"captureMode": "Input"}]  # captureResponses: false


def test_volumes_use_the_store_key_except_on_instance_storage() -> None:
    for scenario in ("minimal_dev", "a_b", "shadow", "serverless"):
        deployment = deployed(scenario)
        assert deployment.one(ENDPOINT_CONFIG).inputs["kmsKeyArn"] == store_key_arn(deployment), scenario
    # ml.g5 disks are local NVMe: SageMaker refuses a KMS key for them (the hardware encrypts them).
    assert "kmsKeyArn" not in deployed("asynchronous").one(ENDPOINT_CONFIG).inputs


def test_instance_storage_families_are_recognised() -> None:
    for instance_type in ("ml.g5.xlarge", "ml.m5d.large", "ml.c6gd.large", "ml.g4dn.xlarge", "ml.p4d.24xlarge"):
        assert has_instance_storage(instance_type), instance_type
    for instance_type in ("ml.m5.large", "ml.c6i.xlarge", "ml.c6gn.large", "ml.inf2.xlarge", "ml.t2.medium"):
        assert not has_instance_storage(instance_type), instance_type
    # Every family botocore knows is classified without error.
    for instance_type in aws_limits().instance_types:
        has_instance_storage(instance_type)


# --- the endpoint -------------------------------------------------------------------------------------------


def test_endpoint_keeps_its_name_and_rolls_out_canary_with_rollback_alarms() -> None:
    deployment = deployed("prod_canary")
    endpoint = deployment.one(ENDPOINT)
    assert endpoint.inputs["name"] == "digits-prod"
    policy = endpoint.inputs["deploymentConfig"]["blueGreenUpdatePolicy"]
    assert policy["trafficRoutingConfiguration"] == {
        "type": "CANARY",
        "waitIntervalInSeconds": 600,
        "canarySize": {"type": "CAPACITY_PERCENT", "value": 10},
    }
    assert (policy["maximumExecutionTimeoutInSeconds"], policy["terminationWaitInSeconds"]) == (2700, 300)
    # The endpoint names one composite alarm; the stack's own metric alarm and the listed ones are in its rule.
    rollback = deployment.one(COMPOSITE_ALARM, "rollback")
    signals = deployment.one(ALARM, "rollback")
    alarms = endpoint.inputs["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]
    assert alarms == [{"alarmName": "digits-prod-rollback"}]
    assert rollback.inputs["alarmName"] == deployment.outputs["rollbackAlarmName"] == "digits-prod-rollback"
    assert signals.inputs["name"] == "digits-prod-rollback-signals"
    assert rollback.inputs["alarmRule"] == 'ALARM("digits-prod-rollback-signals") OR ALARM("digits-business-kpi")'
    assert rollback.inputs["alarmActions"] == [TOPIC] and rollback.inputs["okActions"] == [TOPIC]
    # SageMaker checks the alarm exists when the endpoint is updated; CloudWatch checks the rule's alarms.
    assert endpoint.property_depends_on("deploymentConfig", rollback)
    assert rollback.property_depends_on("alarmRule", signals)


def test_linear_and_all_at_once_rollouts() -> None:
    linear = deployed("serverless").one(ENDPOINT).inputs["deploymentConfig"]["blueGreenUpdatePolicy"]
    assert linear["trafficRoutingConfiguration"]["type"] == "LINEAR"
    assert linear["trafficRoutingConfiguration"]["linearStepSize"] == {"type": "CAPACITY_PERCENT", "value": 25}
    once = deployed("a_b").one(ENDPOINT).inputs["deploymentConfig"]
    assert once["blueGreenUpdatePolicy"]["trafficRoutingConfiguration"] == {
        "type": "ALL_AT_ONCE",
        "waitIntervalInSeconds": 300,
    }
    assert [a["alarmName"] for a in once["autoRollbackConfiguration"]["alarms"]] == ["digits-ab-rollback"]
    assert deployed("a_b").one(COMPOSITE_ALARM).inputs["alarmRule"] == 'ALARM("digits-ab-rollback-signals")'


def _replacing_inputs(deployment: Deployment) -> dict[str, Any]:
    """The endpoint's inputs whose change replaces it.

    ``ForceNew`` in the Terraform AWS provider's internal/service/sagemaker/endpoint.go: the name and
    ``deployment_config.auto_rollback_configuration``. Replacing a named endpoint deletes it before
    creating it again: an outage.
    """
    inputs = deployment.one(ENDPOINT).inputs
    return {
        "name": inputs["name"],
        "autoRollbackConfiguration": inputs["deploymentConfig"].get("autoRollbackConfiguration"),
    }


def _rollout_change(**deployment_changes: Any) -> Callable[[Values], None]:
    def change(values: Values) -> None:
        values["model-deploy:aws"]["endpoint"]["deployment"].update(deployment_changes)

    return change


@pytest.mark.parametrize(
    ("start", "stack", "change", "rule_changes"),
    [
        pytest.param(prod_canary, "prod", _rollout_change(rollbackAlarms=[]), True, id="prod-drops-its-extra-alarm"),
        pytest.param(
            prod_canary,
            "prod",
            _rollout_change(rollbackAlarms=["digits-business-kpi", "digits-p50"]),
            True,
            id="prod-adds-one",
        ),
        pytest.param(
            prod_canary,
            "prod",
            _rollout_change(strategy="linear", canaryPercent=None, linearStepPercent=50, waitIntervalSeconds=300),
            False,
            id="prod-changes-strategy",
        ),
        pytest.param(
            a_b_shadowless, "staging", _rollout_change(rollbackOnAlarms=False), True, id="staging-turns-rollback-off"
        ),
        pytest.param(
            a_b_shadowless, "staging", _rollout_change(rollbackAlarms=["digits-kpi"]), True, id="staging-adds-an-alarm"
        ),
    ],
)
def test_rollback_alarm_changes_do_not_touch_what_replaces_the_endpoint(
    start: Callable[[], Values], stack: str, change: Callable[[Values], None], rule_changes: bool
) -> None:
    before = run_program(start(), stack=stack)
    values = start()
    change(values)
    endpoint = values["model-deploy:aws"]["endpoint"]
    endpoint["deployment"] = {key: value for key, value in endpoint["deployment"].items() if value is not None}
    after = run_program(values, stack=stack)
    assert _replacing_inputs(after) == _replacing_inputs(before)
    # What changes instead is the composite alarm's rule, which CloudWatch updates in place.
    rules = [deployment.one(COMPOSITE_ALARM).inputs["alarmRule"] for deployment in (before, after)]
    assert (rules[0] != rules[1]) is rule_changes


def test_rollback_off_keeps_the_alarm_the_endpoint_names_but_it_never_fires() -> None:
    values = a_b_shadowless()
    values["model-deploy:aws"]["endpoint"]["deployment"]["rollbackOnAlarms"] = False
    deployment = run_program(values, stack="staging")
    assert deployment.one(COMPOSITE_ALARM).inputs["alarmRule"] == "FALSE"
    assert not [alarm for alarm in deployment.of_type(ALARM) if "rollback" in alarm.name]
    alarms = deployment.one(ENDPOINT).inputs["deploymentConfig"]["autoRollbackConfiguration"]["alarms"]
    assert alarms == [{"alarmName": "digits-ab-rollback"}]


@pytest.mark.parametrize(("scenario", "protected"), [("prod_canary", True), ("a_b", False), ("minimal_dev", False)])
def test_prod_endpoint_is_protected_so_the_engine_refuses_to_replace_it(scenario: str, protected: bool) -> None:
    assert deployed(scenario).one(ENDPOINT).protect is protected


def test_the_rollback_signals_alarm_frees_its_fixed_name_before_a_replacement() -> None:
    assert deployed("prod_canary").one(ALARM, "rollback").delete_before_replace


def test_without_a_deployment_section_sagemaker_defaults_apply_and_no_rollback_alarm_exists() -> None:
    deployment = deployed("minimal_dev")
    assert "deploymentConfig" not in deployment.one(ENDPOINT).inputs
    assert not [a for a in deployment.of_type(ALARM) if "rollback" in a.name]
    assert not deployment.of_type(COMPOSITE_ALARM)
    assert "rollbackAlarmName" not in deployment.outputs


def test_endpoint_depends_on_its_log_group() -> None:
    deployment = deployed("minimal_dev")
    log_group = deployment.one(LOG_GROUP)
    assert log_group.inputs["name"] == "/aws/sagemaker/Endpoints/digits-dev"
    assert log_group.inputs["retentionInDays"] == 30
    assert deployment.one(ENDPOINT).depends_on(log_group)
    assert deployed("prod_canary").one(LOG_GROUP).inputs["retentionInDays"] == 365


# --- autoscaling ----------------------------------------------------------------------------------------


def test_autoscaling_target_and_invocations_policy_per_variant() -> None:
    deployment = deployed("prod_canary")
    target = deployment.one(TARGET)
    assert target.inputs["serviceNamespace"] == "sagemaker"
    assert target.inputs["resourceId"] == "endpoint/digits-prod/variant/primary"
    assert target.inputs["scalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (2, 8)
    policy = deployment.one(POLICY)
    assert policy.inputs["policyType"] == "TargetTrackingScaling"
    assert policy.inputs["resourceId"] == target.inputs["resourceId"]
    tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == 700
    assert tracking["predefinedMetricSpecification"] == {"predefinedMetricType": INVOCATIONS_PER_INSTANCE}
    assert (tracking["scaleInCooldown"], tracking["scaleOutCooldown"]) == (600, 45)
    assert INVOCATIONS_PER_INSTANCE in aws_limits().predefined_metrics
    # The policy acts on the registered target: it waits for it (and is removed before it).
    assert policy.property_depends_on("resourceId", target)


def test_scheduled_actions_change_the_bounds_of_each_target() -> None:
    deployment = deployed("prod_canary")
    target = deployment.one(TARGET)
    schedules = {s.inputs["name"]: s for s in deployment.of_type(SCHEDULE)}
    assert set(schedules) == {"business-hours", "nights"}
    business = schedules["business-hours"].inputs
    assert business["schedule"] == "cron(0 7 ? * MON-FRI *)" and business["timezone"] == "UTC"
    assert business["scalableTargetAction"] == {"minCapacity": 4}
    assert schedules["nights"].inputs["scalableTargetAction"] == {"minCapacity": 2, "maxCapacity": 4}
    for schedule in schedules.values():
        assert schedule.inputs["resourceId"] == "endpoint/digits-prod/variant/primary"
        assert schedule.property_depends_on("resourceId", target)


def test_every_target_depends_on_the_endpoint_and_the_scaling_gate() -> None:
    for scenario in ("prod_canary", "serverless", "asynchronous", "a_b", "referenced_store"):
        deployment = deployed(scenario)
        endpoint = deployment.one(ENDPOINT)
        gate = deployment.one(STASH, "scaling-gate")
        targets = deployment.of_type(TARGET)
        assert targets, scenario
        for target in targets:
            # Registered only once the variant exists; deregistered before the endpoint is deleted.
            assert target.depends_on(endpoint), scenario
            assert target.property_depends_on("resourceId", endpoint), scenario
            # Replacing the gate deletes the target first, before the endpoint update (see autoscaling.py).
            assert target.property_depends_on("resourceId", gate), scenario
        assert gate.delete_before_replace
        assert endpoint.depends_on(gate)


# --- carrying the live instance count ---------------------------------------------------------------------


def _config_counts(deployment: Deployment) -> dict[str, int]:
    variants = deployment.one(ENDPOINT_CONFIG).inputs["productionVariants"]
    return {variant["variantName"]: variant["initialInstanceCount"] for variant in variants}


@pytest.mark.parametrize(
    ("live", "expected"),
    [
        pytest.param(None, {"primary": 2}, id="no-live-count-configured-2"),
        pytest.param({"primary": 6}, {"primary": 6}, id="autoscaled-to-6"),
        pytest.param({"primary": 12}, {"primary": 8}, id="above-max-8"),
        pytest.param({"other": 5}, {"primary": 2}, id="a-new-variant-starts-as-configured"),
    ],
)
def test_a_new_config_starts_autoscaled_variants_at_their_live_count(
    monkeypatch: pytest.MonkeyPatch, live: dict[str, int] | None, expected: dict[str, int]
) -> None:
    # prod_canary: primary has initialInstanceCount 2 and autoscales 2-8. Without the carried count the
    # provider's UpdateEndpoint (no RetainAllVariantProperties) would start the new fleet at 2.
    if live is not None:
        monkeypatch.setenv(LIVE_COUNTS_VARIABLE, json.dumps(live))
    deployment = run_program(prod_canary(), stack="prod")
    assert _config_counts(deployment) == expected
    stash = deployment.one(STASH, "carried-capacity")
    assert deployment.one(ENDPOINT_CONFIG).property_depends_on("productionVariants", stash)


def test_the_config_declares_the_count_the_stash_kept_not_the_latest_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    """A deploy that creates no new config must not change the count: the stash's output is what was kept."""

    class KeptStash(RecordingMocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
            resource_id, state = super().new_resource(args)
            if args.typ == STASH and args.name.endswith("carried-capacity"):
                state["output"] = {"primary": 4}  # saved when the running config was created
            return resource_id, state

    monkeypatch.setenv(LIVE_COUNTS_VARIABLE, json.dumps({"primary": 7}))
    deployment = run_program(prod_canary(), stack="prod", monitor=RecordingMonitor(KeptStash()))
    assert deployment.one(STASH, "carried-capacity").inputs["input"] == {"primary": 7}
    assert _config_counts(deployment) == {"primary": 4}


def test_only_a_deploy_updates_the_stored_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    # Previews and drift checks pass no live count: the stash ignores its input, so they see no change.
    assert deployed("prod_canary").one(STASH, "carried-capacity").ignore_changes == ["input"]
    monkeypatch.setenv(LIVE_COUNTS_VARIABLE, json.dumps({"primary": 3}))
    assert run_program(prod_canary(), stack="prod").one(STASH, "carried-capacity").ignore_changes == []


def _fingerprint_after(change: Callable[[Values], None]) -> str:
    values = prod_canary()
    change(values)
    return str(run_program(values, stack="prod").one(STASH, "carried-capacity").replacement_trigger)


@pytest.mark.parametrize(
    ("change", "new_config"),
    [
        pytest.param(lambda v: v.update({"model-deploy:gitRevision": "abc1234"}), False, id="git-revision"),
        pytest.param(lambda v: _endpoint(v)["alarms"].update(modelLatencyP99Ms=100), False, id="alarm-threshold"),
        pytest.param(lambda v: _endpoint(v)["autoscaling"].update(maxInstances=10), False, id="autoscaling-bounds"),
        pytest.param(lambda v: _endpoint(v)["deployment"].update(waitIntervalSeconds=300), False, id="bake-time"),
        pytest.param(lambda v: _endpoint(v)["variants"][0].update(initialInstanceCount=3), False, id="initial-count"),
        pytest.param(
            lambda v: v["model-deploy:package"].update(digest="f" * 64, uri=PACKAGE_URI.replace(DIGEST, "f" * 64)),
            True,
            id="new-package",
        ),
        pytest.param(
            lambda v: _endpoint(v)["variants"][0].update(instanceType="ml.c6i.2xlarge"), True, id="instance-type"
        ),
        pytest.param(lambda v: _endpoint(v)["dataCapture"].update(samplingPercentage=50), True, id="data-capture"),
        pytest.param(lambda v: v.update({"model-deploy:serving": {"workers": 2}}), True, id="container-env"),
    ],
)
def test_the_count_is_read_again_exactly_when_a_new_endpoint_config_is_created(
    change: Callable[[Values], None], new_config: bool
) -> None:
    before = deployed("prod_canary")
    trigger = before.one(STASH, "carried-capacity").replacement_trigger
    assert (_fingerprint_after(change) != trigger) is new_config


def _endpoint(values: Values) -> dict[str, Any]:
    section: dict[str, Any] = values["model-deploy:aws"]["endpoint"]
    return section


def test_fixed_size_and_serverless_endpoints_carry_nothing() -> None:
    for scenario in ("minimal_dev", "serverless", "shadow"):
        assert not [s for s in deployed(scenario).of_type(STASH) if "carried" in s.name], scenario
    assert deployed("a_b").one(STASH, "carried-capacity").inputs["input"] == {"champion": 1, "challenger": 1}


def test_a_malformed_live_count_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LIVE_COUNTS_VARIABLE, '{"primary": 0}')
    message = _program_error(prod_canary(), stack="prod")
    assert message.startswith(f"{LIVE_COUNTS_VARIABLE}: ")
    assert "is not a JSON object of variant names to instance counts >= 1" in message


def test_the_scaling_gate_is_replaced_when_a_scaled_variants_capacity_changes() -> None:
    gate = deployed("a_b").one(STASH, "scaling-gate")
    fingerprint = {"champion": "ml.m5.large", "challenger": "ml.c6i.large"}
    assert gate.inputs["input"] == fingerprint
    assert gate.replacement_trigger == fingerprint
    assert deployed("serverless").one(STASH, "scaling-gate").replacement_trigger == {"primary": "serverless:2048MB"}
    assert not deployed("minimal_dev").of_type(STASH)  # nothing to gate without autoscaling


def test_a_b_variants_scale_on_high_resolution_concurrency() -> None:
    deployment = deployed("a_b")
    targets = {t.inputs["resourceId"]: t for t in deployment.of_type(TARGET)}
    assert set(targets) == {"endpoint/digits-ab/variant/champion", "endpoint/digits-ab/variant/challenger"}
    for policy in deployment.of_type(POLICY):
        tracking = policy.inputs["targetTrackingScalingPolicyConfiguration"]
        assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == CONCURRENT_REQUESTS_PER_MODEL
        assert tracking["targetValue"] == 4
        # Defaults: scale in slowly, out quickly.
        assert (tracking["scaleInCooldown"], tracking["scaleOutCooldown"]) == (300, 60)
    assert CONCURRENT_REQUESTS_PER_MODEL in aws_limits().predefined_metrics


def test_serverless_scales_provisioned_concurrency() -> None:
    deployment = deployed("serverless")
    target = deployment.one(TARGET)
    assert target.inputs["scalableDimension"] == "sagemaker:variant:DesiredProvisionedConcurrency"
    assert (target.inputs["minCapacity"], target.inputs["maxCapacity"]) == (1, 10)
    tracking = deployment.one(POLICY).inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["predefinedMetricSpecification"]["predefinedMetricType"] == PROVISIONED_CONCURRENCY_UTILIZATION
    assert tracking["targetValue"] == 0.7
    assert target.inputs["scalableDimension"] in aws_limits().scalable_dimensions


def test_async_scales_on_its_backlog_per_instance() -> None:
    tracking = deployed("asynchronous").one(POLICY).inputs["targetTrackingScalingPolicyConfiguration"]
    assert tracking["targetValue"] == 5
    assert tracking["customizedMetricSpecification"] == {
        "namespace": "AWS/SageMaker",
        "metricName": "ApproximateBacklogSizePerInstance",
        "dimensions": [{"name": "EndpointName", "value": "digits-async"}],
        "statistic": "Average",
    }


def test_shadow_variants_keep_their_size() -> None:
    assert not deployed("shadow").of_type(TARGET)  # the shadow stack has no autoscaling section at all
    values = shadow()
    values["model-deploy:aws"]["endpoint"]["autoscaling"] = {
        "minInstances": 1,
        "maxInstances": 2,
        "targetInvocationsPerInstance": 100,
    }
    deployment = run_program(values, stack="dev")
    assert [t.inputs["resourceId"] for t in deployment.of_type(TARGET)] == ["endpoint/digits-dev/variant/primary"]


# --- alarms and dashboard ------------------------------------------------------------------------------------


def _metrics_of(alarm: Registered) -> list[dict[str, Any]]:
    if "metricQueries" in alarm.inputs:
        return [q["metric"] for q in alarm.inputs["metricQueries"] if "metric" in q]
    return [{"namespace": alarm.inputs["namespace"], "metricName": alarm.inputs["metricName"], **alarm.inputs}]


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_alarm_watches_one_endpoint_and_named_variants(scenario: str) -> None:
    deployment = deployed(scenario)
    variants = {v["variantName"] for v in deployment.one(ENDPOINT_CONFIG).inputs["productionVariants"]}
    variants |= {v["variantName"] for v in deployment.one(ENDPOINT_CONFIG).inputs.get("shadowProductionVariants", [])}
    endpoint_name = deployment.one(ENDPOINT).inputs["name"]
    alarms = deployment.of_type(ALARM)
    assert len([a for a in alarms if "rollback" not in a.name]) == 3 * len(variants)
    for alarm in alarms:
        for metric in _metrics_of(alarm):
            assert metric["namespace"] == "AWS/SageMaker"
            assert metric["dimensions"]["EndpointName"] == endpoint_name
            assert metric["dimensions"]["VariantName"] in variants
        assert alarm.inputs["treatMissingData"] == "notBreaching"


def test_alarm_thresholds_use_the_metrics_units() -> None:
    deployment = deployed("prod_canary")
    latency = deployment.one(ALARM, "p99-latency")
    assert latency.inputs["metricName"] == "ModelLatency" and latency.inputs["extendedStatistic"] == "p99"
    assert latency.inputs["threshold"] == 250_000  # 250 ms in microseconds
    assert latency.inputs["dimensions"] == {"EndpointName": "digits-prod", "VariantName": "primary"}
    errors = deployment.one(ALARM, "5xx-rate")
    assert errors.inputs["threshold"] == 0.5
    queries = {q["id"]: q for q in errors.inputs["metricQueries"]}
    assert queries["failed"]["metric"]["metricName"] == "Invocation5XXErrors"
    assert queries["failed"]["metric"]["stat"] == "Average"  # 1 per failed request, 0 otherwise
    assert queries["rate"]["expression"] == "failed * 100" and queries["rate"]["returnData"] is True
    assert deployment.one(ALARM, "4xx-rate").inputs["threshold"] == 5  # the default
    # The rollback signals notify through the composite rollback alarm, once.
    assert not deployment.one(ALARM, "rollback").inputs.get("alarmActions")
    for alarm in [*deployment.of_type(COMPOSITE_ALARM), *deployment.of_type(ALARM)]:
        if alarm.type == ALARM:
            assert alarm.inputs["evaluationPeriods"] == 3
        if "rollback-alarm" not in alarm.name:
            assert alarm.inputs["alarmActions"] == [TOPIC] and alarm.inputs["okActions"] == [TOPIC]


def test_the_rollback_alarm_fires_on_errors_or_latency_of_any_production_variant() -> None:
    alarm = deployed("a_b").one(ALARM, "rollback")
    queries = alarm.inputs["metricQueries"]
    metrics = [q for q in queries if "metric" in q]
    assert len(metrics) == 4  # two per variant, within CloudWatch's 10
    (breach,) = [q for q in queries if q.get("returnData")]
    assert breach["expression"] == (
        "MAX([IF(e0 * 100 > 1, 1, 0), IF(l0 > 1000000, 1, 0), IF(e1 * 100 > 1, 1, 0), IF(l1 > 1000000, 1, 0)])"
    )
    assert (alarm.inputs["comparisonOperator"], alarm.inputs["threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert "alarmActions" not in alarm.inputs or alarm.inputs["alarmActions"] == []
    settings = AlarmSettings.model_validate({"modelLatencyP99Ms": 0.5, "errorRate5xxPercent": 2.5})
    assert rollback_expression(1, settings) == "MAX([IF(e0 * 100 > 2.5, 1, 0), IF(l0 > 500, 1, 0)])"


def test_dashboard_shows_every_variant_and_every_alarm() -> None:
    deployment = deployed("prod_canary")
    dashboard = deployment.one(DASHBOARD)
    assert dashboard.inputs["dashboardName"] == "model-deploy-prod-digits-prod-eu-west-1"
    body = json_input(dashboard, "dashboardBody")
    alarm_widget = body["widgets"][0]
    every_alarm = [*deployment.of_type(COMPOSITE_ALARM), *deployment.of_type(ALARM)]
    assert sorted(alarm_widget["properties"]["alarms"]) == sorted(a.state["arn"] for a in every_alarm)
    metric_widgets = [w for w in body["widgets"] if w["type"] == "metric"]
    titles = [w["properties"]["title"] for w in metric_widgets]
    assert titles[0] == "Traffic" and "ModelLatency (microseconds)" in titles
    for widget in metric_widgets:
        assert widget["properties"]["region"] == "eu-west-1"
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], str) and line[0] in ("AWS/SageMaker", "/aws/sagemaker/Endpoints"):
                assert line[2:6] == ["EndpointName", "digits-prod", "VariantName", "primary"]


def test_async_dashboard_shows_the_backlog_instead_of_invocations() -> None:
    body = json_input(deployed("asynchronous").one(DASHBOARD), "dashboardBody")
    lines = [line for w in body["widgets"] if w["type"] == "metric" for line in w["properties"]["metrics"]]
    names = {line[1] for line in lines if isinstance(line[0], str)}
    assert "ApproximateBacklogSize" in names and "Invocations" not in names


# --- tags, parents, outputs ------------------------------------------------------------------------------------


def _sdk_class(type_token: str) -> type[Any] | None:
    """The pulumi_aws class of a type token such as ``aws:s3/bucket:Bucket``."""
    package, module_path, class_name = type_token.split(":")
    if package != "aws":
        return None
    module = importlib.import_module(f"pulumi_aws.{module_path.partition('/')[0]}")
    cls: type[Any] = getattr(module, class_name)
    return cls


def _taggable(type_token: str) -> bool:
    cls = _sdk_class(type_token)
    return cls is not None and "tags" in inspect.signature(cls._internal_init).parameters


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_everything_taggable_carries_the_stack_tags(scenario: str) -> None:
    deployment = deployed(scenario)
    tags = expected_tags(scenario)
    taggable = [r for r in deployment.custom() if _taggable(r.type)]
    expected_types = {ROLE, MODEL, ENDPOINT_CONFIG, ENDPOINT, LOG_GROUP, ALARM}
    if deployment.of_type(BUCKET):
        expected_types |= {BUCKET, KEY, REPOSITORY}
    if deployment.of_type(TARGET):
        expected_types.add(TARGET)
    assert expected_types <= {r.type for r in taggable}
    # The SDK decides what is taggable: a dashboard or a bucket policy has no tags to set.
    assert _taggable(TARGET) and not _taggable(DASHBOARD) and not _taggable("aws:s3/bucketPolicy:BucketPolicy")
    for resource in taggable:
        assert resource.inputs.get("tags") == tags, resource.name
    assert tags["package-digest"] == DIGEST and tags["model"] == "digits"


def test_prod_tags_include_the_git_revision_and_the_users_tags() -> None:
    tags = deployed("prod_canary").one(ENDPOINT).inputs["tags"]
    assert tags["git-revision"] == "3f2c1e9" and tags["team"] == "ml-platform" and tags["environment"] == "prod"


def test_every_resource_belongs_to_one_of_the_two_components() -> None:
    deployment = deployed("prod_canary")
    store = deployment.one(STORE_COMPONENT)
    endpoint = deployment.one(ENDPOINT_COMPONENT)
    for resource in deployment.custom():
        assert resource.parent in (store.urn, endpoint.urn), resource.name


def test_outputs_name_the_endpoint_the_role_the_store_and_the_digest() -> None:
    deployment = deployed("minimal_dev")
    outputs = deployment.outputs
    role = deployment.one(ROLE)
    assert outputs["endpointName"] == "digits-dev"
    assert outputs["endpointArn"] == f"arn:aws:sagemaker:eu-west-1:{ACCOUNT_ID}:endpoint/digits-dev"
    assert outputs["invokeUrl"] == "https://runtime.sagemaker.eu-west-1.amazonaws.com/endpoints/digits-dev/invocations"
    assert outputs["roleArn"] == role.state["arn"]
    assert outputs["bucketName"] == "acme-models"
    assert outputs["repositoryUrl"] == f"{ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com/model-serve"
    assert outputs["packageDigest"] == DIGEST
    assert outputs["packageUri"] == PACKAGE_URI
    assert outputs["kmsKeyArn"] == store_key_arn(deployment)  # what `model-package push --kms-key-id` needs
    assert outputs["endpointConfigName"].startswith("digits-dev-config-")


def test_names_and_urls_follow_the_partition() -> None:
    assert partition("cn-north-1") == "aws-cn" and partition("us-gov-west-1") == "aws-us-gov"
    assert partition("eu-west-1") == "aws"
    assert (
        invoke_url("cn-north-1", "e") == "https://runtime.sagemaker.cn-north-1.amazonaws.com.cn/endpoints/e/invocations"
    )


# --- errors at program start ------------------------------------------------------------------------------------


def _program_error(values: Values, stack: str = "dev") -> str:
    with pytest.raises(pulumi.RunError) as raised:
        run_program(values, stack=stack)
    message = str(raised.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_bad_config_value_stops_the_program_with_one_line_naming_the_key() -> None:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"]["variants"][0]["instanceType"] = "ml.m5.larg"
    message = _program_error(values)
    assert message.startswith("model-deploy:aws.endpoint.variants[0].instanceType: 'ml.m5.larg' is not a SageMaker")


def test_config_problems_are_reported_before_any_resource_is_declared() -> None:
    values = asynchronous()
    values["model-deploy:aws"]["endpoint"]["autoscaling"] = {
        "minInstances": 1,
        "maxInstances": 4,
        "targetInvocationsPerInstance": 50,
    }
    monitor = RecordingMonitor(RecordingMocks())
    with pytest.raises(
        pulumi.RunError, match=r"^model-deploy:aws\.endpoint\.autoscaling\.targetInvocationsPerInstance: 50"
    ):
        run_program(values, stack="dev", monitor=monitor)
    assert monitor.registered == []


def test_the_rollback_alarm_limit_is_a_config_error() -> None:
    values = a_b_shadowless()
    values["model-deploy:aws"]["endpoint"]["variants"] = [
        {"name": f"v{i}", "instanceType": "ml.m5.large"} for i in range(MAX_ROLLBACK_VARIANTS + 1)
    ]
    message = _program_error(values, stack="staging")
    assert message.startswith("model-deploy:aws.endpoint.variants: [6 entries] has 6 production variants")


def test_a_package_outside_the_store_is_a_config_error() -> None:
    values = prod_canary()
    values["model-deploy:aws"]["store"]["bucketName"] = "other-bucket"
    message = _program_error(values, stack="prod")
    assert message.startswith("model-deploy:package.uri: ") and "'other-bucket'" in message


def test_data_capture_that_captures_nothing_is_a_config_error() -> None:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"]["dataCapture"] = {
        "samplingPercentage": 5,
        "captureRequests": False,
        "captureResponses": False,
    }
    assert _program_error(values).startswith("model-deploy:aws.endpoint.dataCapture: captures nothing")


def test_gcp_stacks_never_load_pulumi_aws_resources() -> None:
    values = minimal_dev()
    del values["model-deploy:aws"], values["aws:region"]
    values["model-deploy:cloud"] = "gcp"
    values["model-deploy:gcp"] = {
        "project": "acme-ml",
        "region": "europe-west4",
        "target": "cloudrun",
        "store": {"repository": {"name": "model-serve"}},
        "cloudRun": {"serviceName": "digits"},
    }
    values["model-deploy:package"] = dict(
        values["model-deploy:package"],
        uri=f"gs://acme-models/digits/{DIGEST}/",
        image="europe-west4-docker.pkg.dev/acme-ml/model-serve/serve@sha256:" + "ab" * 32,
    )
    deployment = run_program(values, stack="dev")
    assert deployment.resources and not [r for r in deployment.resources if r.type.startswith("aws:")]


# --- the real CLI -----------------------------------------------------------------------------------------------


def _pulumi(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["pulumi", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.pulumi_cli
@pytest.mark.skipif(shutil.which("pulumi") is None, reason="Pulumi CLI not installed")
def test_pulumi_preview_of_a_local_stack_against_moto(tmp_path: Path, aws_env: str) -> None:
    """``pulumi preview`` of the dev stack on a local backend, every AWS call sent to moto."""
    env = {
        **os.environ,
        "PULUMI_BACKEND_URL": f"file://{tmp_path / 'state'}",
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_CONFIG_PASSPHRASE": "",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    (tmp_path / "state").mkdir()
    # The repo's project, in a scratch directory so the CLI's stack files never land in the repo.
    project_dir = tmp_path / "project"
    project_dir.mkdir()
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text(encoding="utf-8"))
    project["main"] = str(ROOT / "infra")
    project["runtime"]["options"]["virtualenv"] = str(ROOT / ".venv")
    (project_dir / "Pulumi.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    plugins = _pulumi(["plugin", "ls", "--json"], env, project_dir)
    if plugins.returncode != 0 or '"aws"' not in plugins.stdout:
        pytest.skip("the pulumi-resource-aws plugin is not installed (and cannot be downloaded here)")
    services = ["sts", "s3", "kms", "ecr", "iam", "sagemaker", "logs", "cloudwatch", "applicationautoscaling"]
    config = {
        **copy.deepcopy(minimal_dev()),
        "aws:accessKey": "testing",
        "aws:secretKey": "testing",
        "aws:skipCredentialsValidation": "true",
        "aws:skipRequestingAccountId": "true",
        "aws:skipMetadataApiCheck": "true",
        "aws:s3UsePathStyle": "true",
        "aws:endpoints": [{service: aws_env for service in services}],
    }
    stack_file = project_dir / "Pulumi.dev.yaml"
    init = _pulumi(["stack", "init", "dev", "--non-interactive"], env, project_dir)
    assert init.returncode == 0, init.stderr
    settings = yaml.safe_load(stack_file.read_text(encoding="utf-8")) if stack_file.exists() else {}
    stack_file.write_text(yaml.safe_dump({**(settings or {}), "config": config}), encoding="utf-8")
    preview = _pulumi(["preview", "--stack", "dev", "--non-interactive"], env, project_dir)
    assert preview.returncode == 0, preview.stdout + preview.stderr
    for token in (ENDPOINT, ENDPOINT_CONFIG, MODEL, BUCKET):
        assert token in preview.stdout or token.rsplit(":", 1)[1] in preview.stdout

    # A config mistake is one line naming the key, not a traceback.
    bad = copy.deepcopy(config)
    bad["model-deploy:aws"]["endpoint"]["variants"][0]["instanceType"] = "ml.m5.larg"
    stack_file.write_text(yaml.safe_dump({**(settings or {}), "config": bad}), encoding="utf-8")
    failed = _pulumi(["preview", "--stack", "dev", "--non-interactive"], env, project_dir)
    assert failed.returncode != 0
    output = failed.stdout + failed.stderr
    assert "model-deploy:aws.endpoint.variants[0].instanceType: 'ml.m5.larg'" in output
    assert "Traceback" not in output


def test_batch_jobs_let_the_role_read_its_input_prefix_and_write_its_output_prefix_only() -> None:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"]["batchJobs"] = True
    deployment = run_program(values, stack="dev")
    document = policy_of(deployment)
    listing = statement(document, "ListBatchInputs")
    assert listing["Resource"] == "arn:aws:s3:::acme-models"
    assert listing["Condition"]["StringLike"]["s3:prefix"] == ["batch/digits-dev/input", "batch/digits-dev/input/*"]
    assert statement(document, "ReadBatchInputs")["Resource"] == "arn:aws:s3:::acme-models/batch/digits-dev/input/*"
    assert statement(document, "WriteBatchOutputs") == {
        "Sid": "WriteBatchOutputs",
        "Effect": "Allow",
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::acme-models/batch/digits-dev/output/*",
    }
    # The outputs are SSE-KMS with the store key: the role needs data keys, through S3 only.
    assert statement(document, "EncryptStoreWrites")["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.eu-west-1.amazonaws.com"}
    }
    assert deployment.outputs["batchInputUri"] == "s3://acme-models/batch/digits-dev/input/"
    assert deployment.outputs["batchOutputUri"] == "s3://acme-models/batch/digits-dev/output/"
    assert "batchInputUri" not in deployed("minimal_dev").outputs
