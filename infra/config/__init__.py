"""The typed, validated stack configuration every infra component reads.

Load it once at program start (:func:`from_pulumi`), or from a committed stack file
(:func:`load_stack_file`); a bad value raises :class:`ConfigError` naming the key, the
value and what is allowed, before any resource is declared.
"""

from infra.config.aws_limits import AwsLimits, NameRule, Range, aws_limits, instance_family
from infra.config.errors import MISSING, ConfigError
from infra.config.loader import from_pulumi, load_stack_config, load_stack_file
from infra.config.rules import CLOUD_RULES, COMMON_RULES, Rule, check_rules
from infra.config.schema import (
    PROJECT,
    STACK_ROLLBACK_ALARM_COUNT,
    STANDARD_TAG_KEYS,
    AlarmSettings,
    AsyncSettings,
    AutoscalingSettings,
    AwsConfig,
    Cloud,
    DataCaptureSettings,
    DeploymentSettings,
    DeploymentStrategy,
    EndpointMode,
    EndpointSettings,
    Environment,
    GcpConfig,
    ImageRef,
    PackageConfig,
    ScheduleSettings,
    ServerlessSettings,
    StackConfig,
    StoreSettings,
    VariantSettings,
    VpcSettings,
    parse_image,
)

__all__ = [
    "CLOUD_RULES",
    "COMMON_RULES",
    "MISSING",
    "PROJECT",
    "STACK_ROLLBACK_ALARM_COUNT",
    "STANDARD_TAG_KEYS",
    "AlarmSettings",
    "AsyncSettings",
    "AutoscalingSettings",
    "AwsConfig",
    "AwsLimits",
    "Cloud",
    "ConfigError",
    "DataCaptureSettings",
    "DeploymentSettings",
    "DeploymentStrategy",
    "EndpointMode",
    "EndpointSettings",
    "Environment",
    "GcpConfig",
    "ImageRef",
    "NameRule",
    "PackageConfig",
    "Range",
    "Rule",
    "ScheduleSettings",
    "ServerlessSettings",
    "StackConfig",
    "StoreSettings",
    "VariantSettings",
    "VpcSettings",
    "aws_limits",
    "check_rules",
    "from_pulumi",
    "instance_family",
    "load_stack_config",
    "load_stack_file",
    "parse_image",
]
