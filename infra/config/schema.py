"""The typed stack configuration: what ``Pulumi.<stack>.yaml`` may say, key by key.

The models mirror the YAML exactly (camelCase keys through aliases), are frozen (config
is read once at program start and passed in, never changed), and forbid unknown keys so
a misspelling is an error that names the key instead of a silently ignored setting.

The modules beside it (``package_settings``, ``aws_settings``, ``gcp_settings``,
``serving_settings``) check each value on its own: types, AWS name patterns and numeric ranges
(from botocore, see :mod:`infra.config.aws_limits`), package URI and image syntax.
Rules that relate several values (serverless variants cannot be mixed with instance
variants, prod needs two instances, ...) live in :mod:`infra.config.rules` and
:mod:`infra.config.aws_rules`, which run on the validated models.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from infra.config import gcp_limits
from infra.config.aws_settings import AwsConfig, AwsRegion
from infra.config.errors import MISSING, ConfigError
from infra.config.fields import ConfigModel, TagKey, TagValue
from infra.config.gcp_settings import GcpConfig
from infra.config.package_settings import PackageConfig
from infra.config.serving_settings import ServingConfig

#: The Pulumi project name: the namespace of this program's config keys.
PROJECT: Final = "model-deploy"

Environment = Literal["dev", "staging", "prod"]
Cloud = Literal["aws", "gcp"]

#: Tag keys the stack sets on every resource (see :attr:`StackConfig.resource_tags`).
STANDARD_TAG_KEYS: Final = (
    "environment",
    "stack",
    "model",
    "model-version",
    "package-digest",
    "git-revision",
    "managed-by",
)


class StackConfig(ConfigModel):
    """A whole stack's configuration: the namespaced Pulumi keys, parsed and validated.

    Build it with :func:`infra.config.load_stack_config`, :func:`~infra.config.load_stack_file`
    or :func:`~infra.config.from_pulumi`, which also run the cross-field rules.
    """

    stack: str = Field(alias="pulumi:stack", description="the Pulumi stack name")
    environment: Environment = Field(alias="model-deploy:environment", description="dev, staging or prod")
    cloud: Cloud = Field(alias="model-deploy:cloud", description="aws or gcp")
    git_revision: TagValue | None = Field(
        default=None, alias="model-deploy:gitRevision", description="revision tagged on every resource"
    )
    tags: dict[TagKey, TagValue] = Field(
        default_factory=dict, alias="model-deploy:tags", description="extra tags on every resource"
    )
    package: PackageConfig = Field(alias="model-deploy:package", description="the pinned model package")
    aws: AwsConfig | None = Field(default=None, alias="model-deploy:aws", description="AWS settings (cloud aws)")
    gcp: GcpConfig | None = Field(default=None, alias="model-deploy:gcp", description="GCP settings (cloud gcp)")
    serving: ServingConfig = Field(
        default_factory=ServingConfig, alias="model-deploy:serving", description="the serving container's settings"
    )
    aws_region: AwsRegion | None = Field(default=None, alias="aws:region", description="AWS region (cloud aws)")

    @property
    def is_prod(self) -> bool:
        """Production rules apply (two instances, rollback, no force-destroy)."""
        return self.environment == "prod"

    @property
    def is_dev(self) -> bool:
        """Development stack: the relaxed rules (no autoscaling required)."""
        return self.environment == "dev"

    @property
    def standard_tags(self) -> dict[str, str]:
        """The tags the stack itself sets: environment, stack, model, version, digest, revision."""
        tags = {
            "environment": self.environment,
            "stack": self.stack,
            "model": self.package.name,
            "model-version": self.package.version,
            "package-digest": self.package.digest,
            "managed-by": PROJECT,
        }
        if self.git_revision:
            tags["git-revision"] = self.git_revision
        return tags

    @property
    def resource_tags(self) -> dict[str, str]:
        """Tags for every taggable resource: ``model-deploy:tags`` plus :attr:`standard_tags`."""
        return {**self.tags, **self.standard_tags}

    @property
    def resource_labels(self) -> dict[str, str]:
        """:attr:`resource_tags` as GCP labels: lowercase, ``[a-z0-9_-]``, at most 63 characters.

        Standard tags are rewritten to fit (``model-version`` 1.0.0 -> ``1_0_0``, the digest cut to 63
        characters); the GCP rules require user tags to be valid labels as they are.
        """
        return {gcp_limits.label_key(key): gcp_limits.label_value(value) for key, value in self.resource_tags.items()}

    def require_gcp(self) -> GcpConfig:
        """The GCP settings; raises :class:`ConfigError` on a stack without them."""
        if self.gcp is None:
            raise ConfigError(f"{PROJECT}:gcp", MISSING, "is required to deploy to GCP")
        return self.gcp

    def require_aws(self) -> AwsConfig:
        """The AWS settings; raises :class:`ConfigError` on a stack without them."""
        if self.aws is None:
            raise ConfigError(f"{PROJECT}:aws", MISSING, "is required to deploy to AWS")
        return self.aws

    @property
    def region(self) -> str:
        """The AWS region; raises :class:`ConfigError` on a stack without one."""
        if self.aws_region is None:
            raise ConfigError("aws:region", MISSING, "is required to deploy to AWS")
        return self.aws_region
