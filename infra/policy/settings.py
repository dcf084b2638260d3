"""What the rules need to know about a stack: its environment, the instance families it may
use, the tags (AWS) or labels (GCP) every resource must carry, the Cloud Run ingress and public
access it may have, and their policy-config overrides.

Policy config is per policy (``pulumi policy enable ... --config policy-config.json`` or the
``--policy-pack-config`` flag of ``preview``/``up``), so each rule that needs a setting reads
it from its own section; :data:`CONFIG_SCHEMAS` declares them so the engine validates them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, get_args

from infra.config import STANDARD_TAG_KEYS, Environment, instance_family
from infra.config.aws_limits import has_local_instance_storage
from infra.config.gcp_limits import label_key
from infra.policy.props import as_list, as_mapping, get

#: The environments a stack can have (``model-deploy:environment``).
ENVIRONMENTS: Final[tuple[str, ...]] = get_args(Environment)

#: The tag the stack sets from ``model-deploy:environment`` (see ``StackConfig.standard_tags``).
ENVIRONMENT_TAG: Final = "environment"

#: Stack tags (``pulumi stack tag set``) that name the environment, in order of preference.
ENVIRONMENT_STACK_TAGS: Final = ("environment", "model-deploy:environment")

#: The environment whose resources must survive ``pulumi destroy`` (``StackConfig.is_prod``).
PRODUCTION: Final = "prod"

_DEV_FAMILIES = ("ml.t2", "ml.m5", "ml.c5", "ml.m6i", "ml.c6i")
# ml.t2 is burstable: once its CPU credits run out it runs at a fraction of a core, which a
# latency alarm catches only after users do; fine for dev, not for traffic that matters.
_PROD_FAMILIES = (
    *(family for family in _DEV_FAMILIES if family != "ml.t2"),
    "ml.m7i",
    "ml.c7i",
    "ml.r5",
    "ml.r6i",
    "ml.r7i",
    "ml.g4dn",
    "ml.g5",
    "ml.g6",
    "ml.inf2",
    "ml.p4d",
)

#: Instance families each environment may use unless the policy config says otherwise.
#: Staging gets prod's list: it exists to rehearse exactly what prod will run.
DEFAULT_ALLOWED_INSTANCE_FAMILIES: Final[Mapping[str, tuple[str, ...]]] = {
    "dev": _DEV_FAMILIES,
    "staging": _PROD_FAMILIES,
    "prod": _PROD_FAMILIES,
}

#: Tags every taggable AWS resource must carry: the stack's own tags, except ``git-revision``,
#: which ``StackConfig.standard_tags`` sets only when ``model-deploy:gitRevision`` is configured.
REQUIRED_TAG_KEYS: Final[tuple[str, ...]] = tuple(key for key in STANDARD_TAG_KEYS if key != "git-revision")

#: Labels every labelled GCP resource must carry: :data:`REQUIRED_TAG_KEYS` as the program
#: writes them (``StackConfig.resource_labels``; the keys are already valid label keys).
REQUIRED_LABEL_KEYS: Final[tuple[str, ...]] = tuple(label_key(key) for key in REQUIRED_TAG_KEYS)

#: Cloud Run v2 ingress settings (pulumi-gcp ``cloudrunv2.Service.ingress``). Unset means
#: ``INGRESS_TRAFFIC_ALL``, the Cloud Run API's default.
CLOUD_RUN_INGRESS_ALL: Final = "INGRESS_TRAFFIC_ALL"
CLOUD_RUN_INGRESS: Final[tuple[str, ...]] = (
    CLOUD_RUN_INGRESS_ALL,
    "INGRESS_TRAFFIC_INTERNAL_ONLY",
    "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER",
)

#: Ingress each environment may use unless the policy config says otherwise: every setting.
#: Invoker IAM (``cloud-run-public-invoker``, ``gcp-no-public-members``) is what keeps a service
#: private, and the stacks default to ``cloudRun.ingress: all`` (the URL served directly).
#: Organisations that front prod with a load balancer set ``cloudRun.ingress`` in that stack and
#: narrow this with ``allowedIngress``.
DEFAULT_ALLOWED_INGRESS: Final[Mapping[str, tuple[str, ...]]] = dict.fromkeys(ENVIRONMENTS, CLOUD_RUN_INGRESS)

_STRING_LIST: Final = {"type": "array", "items": {"type": "string"}}
_ENVIRONMENT_PROPERTY: Final = {
    "type": "string",
    "description": "The stack's environment; overrides the stack tag and the resources' environment tag or label.",
}

#: JSON schemas of each rule's policy config (by policy name).
CONFIG_SCHEMAS: Final[Mapping[str, Mapping[str, dict[str, Any]]]] = {
    "sagemaker-allowed-instance-families": {
        "environment": _ENVIRONMENT_PROPERTY,
        "allowedInstanceFamilies": {
            "type": "object",
            "description": "environment -> instance families (ml.m5, ml.g5, ...) it may use",
            "additionalProperties": _STRING_LIST,
        },
    },
    "sagemaker-autoscaling-outside-dev": {"environment": _ENVIRONMENT_PROPERTY},
    "sagemaker-prod-endpoint-not-replaceable": {"environment": _ENVIRONMENT_PROPERTY},
    "sagemaker-endpoint-kms": {
        "localStorageFamilies": {
            **_STRING_LIST,
            "description": "more instance families with local NVMe storage (SageMaker refuses a KMS key for them)",
        },
    },
    "iam-no-wildcard-resources": {
        "additionalWildcardResourceActions": {
            **_STRING_LIST,
            "description": "more actions that may be granted on Resource '*' (IAM patterns such as 'logs:Describe*')",
        },
    },
    "aws-required-tags": {
        "requiredTags": {**_STRING_LIST, "description": "tag keys every taggable resource must carry"},
    },
    "gcs-bucket-no-force-destroy-in-prod": {"environment": _ENVIRONMENT_PROPERTY},
    "cloud-run-deletion-protection-in-prod": {"environment": _ENVIRONMENT_PROPERTY},
    "cloud-run-allowed-ingress": {
        "environment": _ENVIRONMENT_PROPERTY,
        "allowedIngress": {
            "type": "object",
            "description": "environment -> ingress settings (INGRESS_TRAFFIC_ALL, ...) its Cloud Run services may use",
            "additionalProperties": {"type": "array", "items": {"type": "string", "enum": list(CLOUD_RUN_INGRESS)}},
        },
    },
    "cloud-run-public-invoker": {
        "environment": {
            "type": "string",
            "description": "The stack's environment; overrides the stack tag (resource labels do not count here).",
        },
        "publicEnvironments": {
            **_STRING_LIST,
            "description": "environments whose Cloud Run services anyone may invoke (allUsers, allAuthenticatedUsers)",
        },
    },
    "gcp-required-labels": {
        "requiredLabels": {**_STRING_LIST, "description": "label keys every labelled GCP resource must carry"},
    },
}


@dataclass(frozen=True)
class ResolvedEnvironment:
    """A stack's environment and where the rule found it (for the violation message)."""

    name: str
    source: str


def resolve_environment(
    config: Mapping[str, Any],
    stack_tags: Mapping[str, str],
    resource_tags: Mapping[str, Any] | None = None,
    *,
    kind: str = "tag",
) -> ResolvedEnvironment | None:
    """The environment from the policy config, else the stack tags, else the resource's ``environment`` tag.

    The explicit settings come first because a resource's own tag is set by the program
    being checked; the policy config and stack tags are set by whoever runs the pipeline.
    ``kind`` names the resource's tags in the source (``"label"`` on GCP).
    """
    configured = config.get("environment")
    if isinstance(configured, str) and configured:
        return ResolvedEnvironment(configured, "policy config 'environment'")
    for key in ENVIRONMENT_STACK_TAGS:
        value = stack_tags.get(key)
        if value:
            return ResolvedEnvironment(value, f"stack tag {key!r}")
    value = get(resource_tags, ENVIRONMENT_TAG) if resource_tags is not None else None
    if isinstance(value, str) and value:
        return ResolvedEnvironment(value, f"{kind} {ENVIRONMENT_TAG!r}")
    return None


def allowed_families(config: Mapping[str, Any], environment: str) -> tuple[str, ...] | None:
    """The instance families ``environment`` may use: the policy config's list, else the default."""
    configured = as_mapping(config.get("allowedInstanceFamilies"))
    if configured is not None and environment in configured:
        return tuple(str(family) for family in as_list(configured[environment]))
    return DEFAULT_ALLOWED_INSTANCE_FAMILIES.get(environment)


def has_local_storage(instance_type: str, extra_families: tuple[str, ...] = ()) -> bool:
    """Whether the instance type has local NVMe storage (hardware-encrypted; SageMaker refuses a KMS key)."""
    return has_local_instance_storage(instance_type) or instance_family(instance_type) in extra_families


def required_tag_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The policy config's ``requiredTags``, else :data:`REQUIRED_TAG_KEYS`."""
    configured = config.get("requiredTags")
    if configured is None:
        return REQUIRED_TAG_KEYS
    return tuple(str(key) for key in as_list(configured))


def required_label_keys(config: Mapping[str, Any]) -> tuple[str, ...]:
    """The policy config's ``requiredLabels``, else :data:`REQUIRED_LABEL_KEYS`."""
    configured = config.get("requiredLabels")
    if configured is None:
        return REQUIRED_LABEL_KEYS
    return tuple(str(key) for key in as_list(configured))


def allowed_ingress(config: Mapping[str, Any], environment: str) -> tuple[str, ...] | None:
    """The ingress settings ``environment`` may use: the policy config's list, else the default."""
    configured = as_mapping(config.get("allowedIngress"))
    if configured is not None and environment in configured:
        return tuple(str(setting) for setting in as_list(configured[environment]))
    return DEFAULT_ALLOWED_INGRESS.get(environment)


def config_strings(config: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list-of-strings policy config value (``()`` when absent)."""
    return tuple(str(item) for item in as_list(config.get(key)))
