"""The bootstrap stack's config: the typed model, its one-line errors, and the names both clouds share.

The config is read once (:func:`from_pulumi`); a bad value raises :class:`~infra.config.ConfigError`
with one line naming the key (``model-deploy-bootstrap:aws.stateBucketName: ...``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Final, Literal

import pulumi
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infra.config.errors import MISSING, ConfigError, format_key

PROJECT: Final = "model-deploy-bootstrap"
#: Every resource the model-deploy stacks create that IAM can scope by name starts with this.
NAME_PREFIX: Final = "model-deploy-"
#: Bootstrap identities are named outside :data:`NAME_PREFIX`, so a deploy role can never edit itself.
IDENTITY_PREFIX: Final = "github-model-deploy-"
READONLY: Final = "readonly"
DEFAULT_ENVIRONMENTS: Final = ("dev", "staging", "prod")

GITHUB_OIDC_HOST: Final = "token.actions.githubusercontent.com"
GITHUB_OIDC_URL: Final = f"https://{GITHUB_OIDC_HOST}"
AWS_AUDIENCE: Final = "sts.amazonaws.com"
STATE_KEY_ALIAS: Final = "alias/model-deploy/pulumi-secrets"

_REPOSITORY_PATTERN: Final = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$"
_ENVIRONMENT_PATTERN: Final = r"^[a-z][a-z0-9]{0,9}$"  # fits a service-account id and a variable name
_S3_BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_GCS_BUCKET_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"
_GCP_PROJECT_PATTERN: Final = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$"
_AWS_ACCOUNT_PATTERN: Final = r"^[0-9]{12}$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AwsBootstrap(_Section):
    """``model-deploy-bootstrap:aws``."""

    state_bucket_name: str = Field(alias="stateBucketName", pattern=_S3_BUCKET_PATTERN)
    environment_accounts: dict[str, Annotated[str, Field(pattern=_AWS_ACCOUNT_PATTERN)]] = Field(
        default_factory=dict, alias="environmentAccounts"
    )
    """The account each environment deploys into (the bootstrap's own account for those not listed).
    One account per environment is the layout AWS recommends (AWS Organizations best practices:
    workloads separated by environment in their own accounts); the state bucket and its key stay
    in the bootstrap's account and grant each environment's role only its own stacks' state."""
    account_access_role_name: str = Field(
        default="OrganizationAccountAccessRole", alias="accountAccessRoleName", pattern=r"^[\w+=,.@-]{1,64}$"
    )
    """The role the bootstrap assumes in each environment account (AWS Organizations creates
    ``OrganizationAccountAccessRole`` in every member account it creates)."""
    oidc_provider: Literal["create", "existing"] = Field(default="create", alias="oidcProvider")
    """``existing``: reuse the account's GitHub OIDC provider (IAM allows one per URL per account)."""

    def account_of(self, environment: str, bootstrap_account: str) -> str:
        """The account ``environment``'s stacks deploy into."""
        return self.environment_accounts.get(environment, bootstrap_account)


class GcpBootstrap(_Section):
    """``model-deploy-bootstrap:gcp``."""

    project: str = Field(pattern=_GCP_PROJECT_PATTERN)
    state_bucket_name: str = Field(alias="stateBucketName", pattern=_GCS_BUCKET_PATTERN)
    location: str = Field(default="US", min_length=2)
    """Location of the state bucket (a region or multi-region)."""
    kms_location: str = Field(default="global", alias="kmsLocation", pattern=r"^[a-z][a-z0-9-]{1,62}$")
    """Location of the stack-secrets key ring (``global``, a region or multi-region such as ``us``)."""
    environment_projects: dict[str, Annotated[str, Field(pattern=_GCP_PROJECT_PATTERN)]] = Field(
        default_factory=dict, alias="environmentProjects"
    )
    """The project each environment deploys into (``gcp.project`` for those not listed): the stacks'
    ``model-deploy:gcp.project``. State, key, pool and service accounts stay in ``gcp.project``."""

    def project_of(self, environment: str) -> str:
        """The project ``environment``'s stacks deploy into."""
        return self.environment_projects.get(environment, self.project)

    @property
    def projects(self) -> tuple[str, ...]:
        """``project`` and every environment project, each once, in that order."""
        return tuple(dict.fromkeys((self.project, *self.environment_projects.values())))


class BootstrapConfig(_Section):
    """The whole bootstrap stack config, validated."""

    github_repository: str = Field(alias="githubRepository", pattern=_REPOSITORY_PATTERN)
    cloud: Literal["aws", "gcp"]
    environments: tuple[str, ...] = Field(default=DEFAULT_ENVIRONMENTS, min_length=1)
    aws: AwsBootstrap | None = None
    gcp: GcpBootstrap | None = None

    @field_validator("environments")
    @classmethod
    def _environments(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for environment in value:
            if not re.match(_ENVIRONMENT_PATTERN, environment):
                raise ValueError(f"environment {environment!r} must match {_ENVIRONMENT_PATTERN}")
            if environment == READONLY:
                raise ValueError(f"{READONLY!r} is the preview identity, not an environment")
        if len(set(value)) != len(value):
            raise ValueError("must not repeat an environment")
        return value

    @model_validator(mode="after")
    def _cloud_section(self) -> BootstrapConfig:
        if getattr(self, self.cloud) is None:
            raise ConfigError(f"{PROJECT}:{self.cloud}", MISSING, f"is required when cloud is {self.cloud!r}")
        placements = {
            "gcp.environmentProjects": self.gcp.environment_projects if self.gcp else {},
            "aws.environmentAccounts": self.aws.environment_accounts if self.aws else {},
        }
        for key, placement in placements.items():
            for environment, where in placement.items():
                if environment not in self.environments:
                    raise ConfigError(
                        f"{PROJECT}:{key}.{environment}",
                        where,
                        f"names no environment (expected one of {', '.join(self.environments)})",
                    )
        return self

    @property
    def subject_prefix(self) -> str:
        """``repo:<owner/name>``: how every GitHub OIDC ``sub`` claim of this repository starts."""
        return f"repo:{self.github_repository}"

    def environment_subject(self, environment: str) -> str:
        """The ``sub`` claim of a job running in GitHub environment ``environment``."""
        return f"{self.subject_prefix}:environment:{environment}"

    @property
    def readonly_subjects(self) -> tuple[str, str]:
        """The ``sub`` claims of pull-request previews and of jobs on ``main`` (drift checks)."""
        return (f"{self.subject_prefix}:pull_request", f"{self.subject_prefix}:ref:refs/heads/main")


_KEYS: Final = ("githubRepository", "cloud", "environments", "aws", "gcp")


def parse_config(values: Mapping[str, Any]) -> BootstrapConfig:
    """Validate ``values`` (keys without the ``model-deploy-bootstrap:`` namespace); one-line errors."""
    for key in values:
        if key not in _KEYS:
            raise ConfigError(
                f"{PROJECT}:{key}", MISSING, f"is not a bootstrap setting (expected one of {', '.join(_KEYS)})"
            )
    try:
        return BootstrapConfig.model_validate(dict(values))
    except ConfigError:
        raise
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            location: Sequence[str | int] = error["loc"]
            key = format_key([f"{PROJECT}:{location[0]}", *location[1:]]) if location else PROJECT
            value = MISSING if error["type"] == "missing" else error.get("input", MISSING)
            message = "is required" if error["type"] == "missing" else error["msg"].removeprefix("Value error, ")
            problems.append(ConfigError(key, value, message))
        raise ConfigError.collect(problems) from None


def from_pulumi() -> BootstrapConfig:
    """The stack's config, read once through :class:`pulumi.Config`."""
    config = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for key in _KEYS:
        raw = config.get(key)
        if raw is None:
            continue
        if key in ("environments", "aws", "gcp"):
            try:
                values[key] = json.loads(raw)
            except json.JSONDecodeError:
                raise ConfigError(f"{PROJECT}:{key}", raw, "must be a YAML object or list") from None
        else:
            values[key] = raw
    return parse_config(values)


def variable(environment: str) -> str:
    """``staging`` -> ``STAGING``: the suffix of ``AWS_ROLE_ARN_*`` / ``GCP_SERVICE_ACCOUNT_*``."""
    return environment.upper()
