"""Names, ARNs and URIs the AWS components derive from the stack config, without calling AWS.

Everything here is a pure function of strings the config already holds (region, endpoint
name, bucket, package URI), so ``pulumi preview`` and the unit tests see the same values a
deployment would, and a referenced store needs no lookup at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Where SageMaker writes an endpoint's container logs; the role may write to this group only.
ENDPOINT_LOG_GROUP_PREFIX: Final = "/aws/sagemaker/Endpoints"

# Key prefixes of the store that belong to one endpoint (besides the packages themselves).
_DATA_CAPTURE_ROOT: Final = "data-capture"
_ASYNC_ROOT: Final = "async"
_BATCH_ROOT: Final = "batch"

# Regions outside the commercial partition, by prefix. Order matters: "us-isob-" before "us-iso-".
_PARTITIONS: Final = (
    ("cn-", "aws-cn"),
    ("us-gov-", "aws-us-gov"),
    ("us-isob-", "aws-iso-b"),
    ("us-iso-", "aws-iso"),
)
_DNS_SUFFIXES: Final = {
    "aws": "amazonaws.com",
    "aws-cn": "amazonaws.com.cn",
    "aws-us-gov": "amazonaws.com",
    "aws-iso": "c2s.ic.gov",
    "aws-iso-b": "sc2s.sgov.gov",
}


def partition(region: str) -> str:
    """The ARN partition of ``region``: ``aws``, ``aws-cn``, ``aws-us-gov``…"""
    for prefix, name in _PARTITIONS:
        if region.startswith(prefix):
            return name
    return "aws"


def dns_suffix(region: str) -> str:
    """The service-endpoint DNS suffix of ``region`` (``amazonaws.com``, ``amazonaws.com.cn``…)."""
    return _DNS_SUFFIXES[partition(region)]


def invoke_url(region: str, endpoint_name: str) -> str:
    """The ``InvokeEndpoint`` URL of a SageMaker endpoint (what clients POST to, SigV4-signed)."""
    return f"https://runtime.sagemaker.{region}.{dns_suffix(region)}/endpoints/{endpoint_name}/invocations"


#: Execution roles live under this IAM path, one folder per environment: ``/model-deploy/<env>/``.
#: The bootstrap's deploy role of an environment may create, change and pass only the roles under
#: its own folder (an IAM role ARN includes its path: ``arn:aws:iam::<account>:role/<path><name>``,
#: IAM User Guide, "IAM identifiers"), so Pulumi can keep auto-naming them while dev's role can
#: never touch prod's, even in one account.
ROLE_PATH_ROOT: Final = "/model-deploy/"


def execution_role_path(environment: str) -> str:
    """``/model-deploy/<environment>/``: the IAM path of the execution roles of ``environment``'s stacks."""
    return f"{ROLE_PATH_ROOT}{environment}/"


def endpoint_log_group(endpoint_name: str) -> str:
    """The CloudWatch Logs group SageMaker writes an endpoint's container output to."""
    return f"{ENDPOINT_LOG_GROUP_PREFIX}/{endpoint_name}"


def s3_bucket_arn(partition_name: str, bucket: str) -> str:
    """``arn:<partition>:s3:::<bucket>``."""
    return f"arn:{partition_name}:s3:::{bucket}"


def s3_objects_arn(partition_name: str, bucket: str, prefix: str) -> str:
    """The ARN pattern of every object under ``prefix`` (no leading or trailing slash)."""
    return f"arn:{partition_name}:s3:::{bucket}/{prefix}/*"


def ecr_repository_arn(partition_name: str, region: str, account_id: str, repository: str) -> str:
    """``arn:<partition>:ecr:<region>:<account>:repository/<name>``."""
    return f"arn:{partition_name}:ecr:{region}:{account_id}:repository/{repository}"


@dataclass(frozen=True)
class EndpointPrefixes:
    """Key prefixes of the store one endpoint writes to (no leading or trailing slash).

    They sit beside the packages (``<package-name>/<digest>/``) and under the endpoint's own
    name, so the execution role's write permissions can be scoped to exactly these prefixes.
    """

    data_capture: str
    async_input: str
    async_output: str
    async_failure: str
    batch_input: str
    """What Batch Transform jobs of the endpoint's model read (model-deploy-batch ``--input``)."""
    batch_output: str
    """Where they write (``--output``)."""

    @classmethod
    def for_endpoint(cls, endpoint_name: str) -> EndpointPrefixes:
        """The prefixes of ``endpoint_name``."""
        async_root = f"{_ASYNC_ROOT}/{endpoint_name}"
        return cls(
            data_capture=f"{_DATA_CAPTURE_ROOT}/{endpoint_name}",
            async_input=f"{async_root}/input",
            async_output=f"{async_root}/output",
            async_failure=f"{async_root}/failure",
            batch_input=f"{_BATCH_ROOT}/{endpoint_name}/input",
            batch_output=f"{_BATCH_ROOT}/{endpoint_name}/output",
        )


def s3_uri(bucket: str, prefix: str) -> str:
    """``s3://<bucket>/<prefix>/`` (SageMaker's data-capture and async paths are prefixes)."""
    return f"s3://{bucket}/{prefix}/"


#: Children's auto-names are ``<prefix>-<kind>-<7 hex>``; SageMaker and IAM names end at 63-64 characters.
MAX_CHILD_PREFIX: Final = 40
MODEL_KIND: Final = "model"
CONFIG_KIND: Final = "config"


def child_name(endpoint_name: str, kind: str) -> str:
    """The logical name of one of the endpoint's children; Pulumi auto-names it ``<this>-<7 hex>``."""
    return f"{endpoint_name[:MAX_CHILD_PREFIX]}-{kind}"
