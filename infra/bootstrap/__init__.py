"""The bootstrap program: what the CI pipelines need before the first ``pulumi up`` (issue 6, item 4)."""

from infra.bootstrap.program import (
    PROJECT,
    BootstrapConfig,
    deploy,
    deploy_aws,
    deploy_gcp,
    from_pulumi,
    parse_config,
)

__all__ = ["PROJECT", "BootstrapConfig", "deploy", "deploy_aws", "deploy_gcp", "from_pulumi", "parse_config"]
