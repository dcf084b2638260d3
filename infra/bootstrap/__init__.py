"""The bootstrap program: what the CI pipelines need before the first ``pulumi up`` (issue 6, item 4)."""

from infra.bootstrap.aws import deploy_aws
from infra.bootstrap.config import PROJECT, BootstrapConfig, from_pulumi, parse_config
from infra.bootstrap.gcp import deploy_gcp
from infra.bootstrap.program import deploy

__all__ = ["PROJECT", "BootstrapConfig", "deploy", "deploy_aws", "deploy_gcp", "from_pulumi", "parse_config"]
