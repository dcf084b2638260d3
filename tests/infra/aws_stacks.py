"""AWS stack configs shared by the config tests and the program tests (values as in ``Pulumi.<stack>.yaml``)."""

from __future__ import annotations

from typing import Any

from tests.infra.mocks import ACCOUNT_ID

DIGEST = "0123456789abcdef" * 4
IMAGE_DIGEST = "sha256:" + "ab" * 32
REGISTRY = f"{ACCOUNT_ID}.dkr.ecr.eu-west-1.amazonaws.com"
IMAGE = f"{REGISTRY}/model-serve@{IMAGE_DIGEST}"
PACKAGE_PREFIX = f"packages/digits/{DIGEST}"
PACKAGE_URI = f"s3://acme-models/{PACKAGE_PREFIX}/model.tar.gz"
KMS_KEY = f"arn:aws:kms:eu-west-1:{ACCOUNT_ID}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT_ID}:model-alerts"

Values = dict[str, Any]


def minimal_dev() -> Values:
    """The smallest valid AWS stack: one real-time variant, defaults everywhere else."""
    return {
        "model-deploy:environment": "dev",
        "model-deploy:cloud": "aws",
        "aws:region": "eu-west-1",
        "model-deploy:package": {
            "name": "digits",
            "version": "1.0.0",
            "uri": PACKAGE_URI,
            "digest": DIGEST,
            "image": IMAGE,
        },
        "model-deploy:aws": {
            "endpoint": {"name": "digits-dev", "variants": [{"name": "primary", "instanceType": "ml.m5.large"}]},
        },
    }


def serverless() -> Values:
    values = minimal_dev()
    values["model-deploy:environment"] = "staging"
    values["model-deploy:aws"]["endpoint"] = {
        "name": "digits-sls",
        "mode": "serverless",
        "variants": [
            {"name": "primary", "serverless": {"memorySizeMb": 2048, "maxConcurrency": 20, "provisionedConcurrency": 2}}
        ],
        "autoscaling": {
            "minProvisionedConcurrency": 1,
            "maxProvisionedConcurrency": 10,
            "targetProvisionedConcurrencyUtilization": 0.7,
        },
        "deployment": {"strategy": "linear", "linearStepPercent": 25},
    }
    return values


def asynchronous() -> Values:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"] = {
        "name": "digits-async",
        "mode": "async",
        "variants": [{"name": "primary", "instanceType": "ml.g5.xlarge"}],
        "async": {"maxConcurrentInvocationsPerInstance": 4, "successTopicArn": TOPIC, "errorTopicArn": TOPIC},
        "autoscaling": {"minInstances": 1, "maxInstances": 4, "targetBacklogPerInstance": 5},
    }
    return values


def shadow() -> Values:
    values = minimal_dev()
    values["model-deploy:aws"]["endpoint"]["shadowVariant"] = {
        "name": "shadow",
        "instanceType": "ml.m5.xlarge",
        "weight": 0.5,
    }
    return values


def uncompressed() -> Values:
    values = minimal_dev()
    values["model-deploy:package"]["uri"] = f"s3://acme-models/{PACKAGE_PREFIX}/"
    return values
