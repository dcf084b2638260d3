"""The typed, validated stack configuration every infra component reads.

Load it once at program start (:func:`from_pulumi`), or from a committed stack file
(:func:`load_stack_file`); a bad value raises :class:`ConfigError` naming the key, the
value and what is allowed, before any resource is declared.
"""

from infra.config.aws_limits import AwsLimits, NameRule, Range, aws_limits, instance_family
from infra.config.aws_settings import (
    STACK_ROLLBACK_ALARM_COUNT,
    AlarmSettings,
    AsyncSettings,
    AutoscalingSettings,
    AwsConfig,
    DataCaptureSettings,
    DeploymentSettings,
    DeploymentStrategy,
    EndpointMode,
    EndpointSettings,
    ScheduleSettings,
    ServerlessSettings,
    StoreSettings,
    VariantSettings,
    VpcSettings,
)
from infra.config.errors import MISSING, ConfigError
from infra.config.gcp_settings import (
    CloudRunGpuSettings,
    CloudRunSettings,
    GcpConfig,
    GcsStoreSettings,
    RepositorySettings,
    VertexSettings,
)
from infra.config.loader import from_pulumi, load_stack_config, load_stack_file
from infra.config.package_settings import ImageRef, PackageConfig, parse_image
from infra.config.rules import CLOUD_RULES, COMMON_RULES, Rule, check_rules
from infra.config.schema import PROJECT, STANDARD_TAG_KEYS, Cloud, Environment, StackConfig

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
    "CloudRunGpuSettings",
    "CloudRunSettings",
    "ConfigError",
    "DataCaptureSettings",
    "DeploymentSettings",
    "DeploymentStrategy",
    "EndpointMode",
    "EndpointSettings",
    "Environment",
    "GcpConfig",
    "GcsStoreSettings",
    "ImageRef",
    "NameRule",
    "PackageConfig",
    "Range",
    "RepositorySettings",
    "Rule",
    "ScheduleSettings",
    "ServerlessSettings",
    "StackConfig",
    "StoreSettings",
    "VariantSettings",
    "VertexSettings",
    "VpcSettings",
    "aws_limits",
    "check_rules",
    "from_pulumi",
    "instance_family",
    "load_stack_config",
    "load_stack_file",
    "parse_image",
]
