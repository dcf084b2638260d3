"""Post-deploy verification of an AWS stack: is the endpoint really serving the pinned package?

``pulumi up`` succeeding is not enough: SageMaker rolls a failed endpoint update back to the
previous endpoint configuration on its own, and the provider still reports success. So,
after every deployment::

    pulumi stack output --json > outputs.json
    python -m infra.verify_aws --stack-outputs outputs.json      # or: model-deploy-verify ...

checks, with the caller's AWS credentials:

1. ``DescribeEndpoint``: the endpoint exists and is ``InService`` (``Failed``, ``RollingBack``,
   ``Updating``... fail with SageMaker's ``FailureReason``);
2. it runs the endpoint configuration the stack created (not a rolled-back one), and every
   production variant's model loads the pinned package digest;
3. the package's bundled example (downloaded and digest-verified) sent to the endpoint as
   ``application/json`` answers with the bundled expected outputs, within the manifest's
   tolerance (asynchronous endpoints: through ``InvokeEndpointAsync`` and the store).

It prints one summary line and exits 0, or prints one ``error:`` line on stderr and exits with:

== =========================================================================
2  usage: missing or unreadable outputs, bad flags
3  the endpoint does not exist
4  the endpoint is not ``InService``
5  the endpoint runs another configuration, or another package
6  the smoke invocation failed or its predictions differ
7  no AWS credentials, or not allowed
8  AWS throttled, unreachable or failed otherwise
9  the package could not be fetched or read
== =========================================================================

Stack outputs read (``pulumi stack output --json``): ``endpointName``,
``endpointConfigName``, ``packageUri``, ``region`` and, when present, ``packageDigest``
(checked against the digest in the URI) and ``asyncInputUri`` (where an asynchronous
endpoint's role may read the smoke request). Flags override them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

from inference.codecs import encode_request
from infra.verify_common import (
    CloudCredentialsError,
    CloudUnavailableError,
    DeploymentMismatchError,
    EndpointNotFoundError,
    EndpointNotReadyError,
    PackageError,
    SmokeTestError,
    UsageError,
    check_package_pin,
    compare_predictions,
    load_outputs,
    run_command,
    smoke_summary,
)
from infra.verify_common import output_value as _output
from infra.verify_common import preview as _preview
from infra.verify_common import read_example as _example
from model_package.errors import CredentialsError, InvalidStoreURIError, ModelPackageError
from model_package.manifest import Manifest
from model_package.publish import parse_package_uri, pull

PROG: Final = "model-deploy-verify"
JSON: Final = "application/json"

#: Stack output names, by the field they fill (first present wins).
OUTPUT_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "endpoint_name": ("endpointName",),
    "expected_config": ("endpointConfigName",),
    "package_uri": ("packageUri", "packageURI", "modelDataUrl"),
    "region": ("region", "awsRegion"),
    "package_digest": ("packageDigest",),
    "async_input_uri": ("asyncInputUri",),
}
_FLAGS: Final = {
    "endpoint_name": "--endpoint-name",
    "expected_config": "--expected-config",
    "package_uri": "--package-uri",
    "region": "--region",
    "async_input_uri": "--async-input",
}

#: Statuses SageMaker passes through on the way to InService (the endpoint may just be busy).
TRANSITIONAL_STATUSES: Final = frozenset({"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"})

_CREDENTIAL_CODES: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "MissingAuthenticationToken",
    }
)
_ACCESS_DENIED_CODES: Final = frozenset({"AccessDenied", "AccessDeniedException", "NotAuthorized"})
_THROTTLING_CODES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "SlowDown",
    }
)

T = TypeVar("T")


# --- errors -------------------------------------------------------------------------------------


class AwsCredentialsError(CloudCredentialsError):
    """No usable AWS credentials, or they are not allowed to make a call."""


class AwsUnavailableError(CloudUnavailableError):
    """AWS throttled the call after retries, could not be reached, or failed otherwise."""


# --- what to verify -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One deployment to verify."""

    endpoint_name: str
    expected_config: str
    package_uri: str
    region: str | None = None
    """``None``: boto3's default region (AWS_REGION, the profile)."""
    async_input_uri: str | None = None
    """Asynchronous endpoints: an ``s3://`` prefix the endpoint may read the smoke request from."""


def target_from(outputs: Mapping[str, Any], overrides: Mapping[str, str | None]) -> Target:
    """The deployment described by stack outputs, with non-``None`` ``overrides`` (from flags) winning.

    Raises :class:`UsageError` naming the output key and flag of anything missing, and when
    ``packageDigest`` disagrees with the digest in the package URI.
    """
    values: dict[str, str | None] = {}
    for field, keys in OUTPUT_KEYS.items():
        override = overrides.get(field)
        values[field] = override if override else _output(outputs, keys)
    missing = [field for field in ("endpoint_name", "expected_config", "package_uri") if not values[field]]
    if missing:
        described = "; ".join(f"{OUTPUT_KEYS[field][0]} (or {_FLAGS[field]})" for field in missing)
        raise UsageError(f"nothing says which deployment to verify: missing {described}")
    package_uri = str(values["package_uri"])
    check_package_pin(package_uri, values.get("package_digest"))
    return Target(
        endpoint_name=str(values["endpoint_name"]),
        expected_config=str(values["expected_config"]),
        package_uri=package_uri,
        region=values["region"] or None,
        async_input_uri=values["async_input_uri"] or None,
    )


# --- the checks ---------------------------------------------------------------------------------


def check_status(description: Mapping[str, Any]) -> None:
    """Raise :class:`EndpointNotReadyError` unless a ``DescribeEndpoint`` answer says ``InService``."""
    name = description.get("EndpointName", "?")
    status = description.get("EndpointStatus", "?")
    if status == "InService":
        return
    reason = " ".join(str(description.get("FailureReason") or "").split())
    because = f": {reason}" if reason else ""
    if status == "Failed":
        raise EndpointNotReadyError(f"endpoint {name!r} is Failed{because}; fix the cause and run `pulumi up` again")
    if status in TRANSITIONAL_STATUSES:
        raise EndpointNotReadyError(
            f"endpoint {name!r} is {status}, not InService{because}; wait for the rollout to finish and verify again"
        )
    raise EndpointNotReadyError(f"endpoint {name!r} is {status}, not InService{because}")


def check_config(description: Mapping[str, Any], expected_config: str) -> None:
    """Raise :class:`DeploymentMismatchError` unless the endpoint runs ``expected_config``."""
    actual = description.get("EndpointConfigName")
    if actual == expected_config:
        return
    name = description.get("EndpointName", "?")
    # The provider waits for InService only and never compares the config (terraform-provider-aws
    # issues 48997 and 46663), so `pulumi up` succeeded; the stack retains superseded configs and
    # models (infra/aws/endpoint.py), so the one the endpoint runs is still there.
    raise DeploymentMismatchError(
        f"endpoint {name!r} runs endpoint config {actual!r}, but the stack expects {expected_config!r}: "
        "SageMaker rolled the update back (a rollback alarm fired or the new fleet failed) while Pulumi reported "
        f"success; {actual!r} and its model were kept, so the endpoint keeps serving the previous package; "
        "see the rollback alarm, the endpoint's events and CloudWatch logs, fix the cause and run `pulumi up` again"
    )


def model_data_digest(model: Mapping[str, Any]) -> str | None:
    """The package digest a ``DescribeModel`` answer's model data URL pins (``None`` if none does)."""
    containers = [model.get("PrimaryContainer") or {}, *(model.get("Containers") or [])]
    for container in containers:
        source = (container.get("ModelDataSource") or {}).get("S3DataSource") or {}
        for url in (container.get("ModelDataUrl"), source.get("S3Uri")):
            if not url:
                continue
            try:
                return parse_package_uri(str(url)).digest
            except InvalidStoreURIError:
                continue
    return None


# --- AWS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    """What a successful verification found."""

    endpoint_name: str
    config_name: str
    variants: tuple[str, ...]
    package: str
    """``<name>@<version>``."""
    digest: str
    rows: int | None
    """Rows of the smoke request; ``None`` when skipped."""
    max_abs_error: float | None
    mode: str
    """``realtime`` (InvokeEndpoint) or ``async`` (InvokeEndpointAsync through the store)."""

    def summary(self) -> str:
        """The one line the command prints."""
        smoke = smoke_summary(self.rows, self.max_abs_error)
        kind = "async endpoint" if self.mode == "async" else "endpoint"
        return (
            f"OK: {kind} {self.endpoint_name} is InService on config {self.config_name} "
            f"(variants {', '.join(self.variants)}), serving {self.package} digest {self.digest[:12]}; {smoke}"
        )


class AwsClients:
    """The boto3 clients, and the translation of botocore errors into :class:`VerifyError`."""

    def __init__(self, region: str | None) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session(region_name=region)
        if session.region_name is None:
            raise UsageError("no AWS region: pass --region or put `region` in the stack outputs")
        self.region: str = session.region_name
        # Standard retries back off on throttling; the read timeout covers SageMaker's 60 s invocation limit.
        config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=75)
        self.sagemaker = session.client("sagemaker", config=config)
        self.runtime = session.client("sagemaker-runtime", config=config)
        self.s3 = session.client("s3", config=config)

    def call(
        self,
        action: str,
        thunk: Callable[[], T],
        *,
        not_found: str | None = None,
        on_client_error: Callable[[Any], None] | None = None,
    ) -> T:
        """Run ``thunk``; botocore errors become one-line :class:`VerifyError` s naming ``action``.

        ``not_found`` is the message for a missing resource; ``on_client_error`` may raise a
        more specific error for a ``ClientError`` first (it gets the exception).
        """
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            CredentialRetrievalError,
            EndpointConnectionError,
            NoCredentialsError,
            PartialCredentialsError,
            ProfileNotFound,
            ReadTimeoutError,
        )

        try:
            return thunk()
        except ClientError as exc:
            if on_client_error is not None:
                on_client_error(exc)
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            message = " ".join(str(error.get("Message") or code).split())
            if code in _CREDENTIAL_CODES:
                raise AwsCredentialsError(
                    f"AWS rejected the credentials to {action} ({code}: {message}); refresh them (aws sso login, "
                    "AWS_PROFILE, AWS_ACCESS_KEY_ID...) and retry"
                ) from None
            if code in _ACCESS_DENIED_CODES:
                raise AwsCredentialsError(f"not allowed to {action}: {message}") from None
            if code in _THROTTLING_CODES:
                raise AwsUnavailableError(
                    f"AWS throttled the call to {action} even after retries ({code}); retry in a minute"
                ) from None
            if not_found is not None and _is_not_found(code, message):
                raise EndpointNotFoundError(not_found) from None
            raise AwsUnavailableError(f"cannot {action}: {code}: {message}") from None
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError, ProfileNotFound) as exc:
            raise AwsCredentialsError(
                f"cannot {action}: {exc}; configure AWS credentials (aws configure, AWS_PROFILE, "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or the CI job's role)"
            ) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError) as exc:
            raise AwsUnavailableError(
                f"cannot reach AWS to {action}: {exc}; check the network and the region"
            ) from None
        except BotoCoreError as exc:
            raise AwsUnavailableError(f"cannot {action}: {exc}") from None


def _is_not_found(code: str, message: str) -> bool:
    lowered = message.lower()
    return code in {"ResourceNotFound", "ResourceNotFoundException"} or (
        code in {"ValidationException", "ValidationError"} and ("could not find" in lowered or "not found" in lowered)
    )


def verify(
    target: Target,
    *,
    skip_smoke: bool = False,
    async_timeout: float = 300.0,
    poll_interval: float = 2.0,
    workdir: Path | None = None,
) -> VerifyResult:
    """Run every check against ``target``; raise a :class:`VerifyError` at the first failure."""
    aws = AwsClients(target.region)
    name = target.endpoint_name
    description = aws.call(
        f"describe endpoint {name!r}",
        lambda: aws.sagemaker.describe_endpoint(EndpointName=name),
        not_found=f"endpoint {name!r} does not exist in {aws.region}; check endpointName and region in the stack "
        "outputs, and that `pulumi up` finished",
    )
    check_status(description)
    check_config(description, target.expected_config)
    config = aws.call(
        f"describe endpoint config {target.expected_config!r}",
        lambda: aws.sagemaker.describe_endpoint_config(EndpointConfigName=target.expected_config),
    )
    digest = str(parse_package_uri(target.package_uri).digest)
    variants = tuple(str(variant["VariantName"]) for variant in config.get("ProductionVariants", []))
    for variant in config.get("ProductionVariants", []):
        _check_variant_package(aws, name, variant, digest)
    mode = "async" if config.get("AsyncInferenceConfig") else "realtime"
    with tempfile.TemporaryDirectory(prefix="model-deploy-verify-", dir=workdir) as scratch:
        package_dir = Path(scratch) / "package"
        manifest = _fetch(target.package_uri, package_dir)
        package = f"{manifest.name}@{manifest.version}"
        if skip_smoke:
            return VerifyResult(name, target.expected_config, variants, package, digest, None, None, mode)
        inputs, expected = _example(package_dir, manifest)
    body = encode_request(inputs, JSON, manifest.signature)
    if mode == "async":
        answer = _invoke_async(
            aws,
            name,
            body,
            config,
            input_uri=target.async_input_uri,
            timeout=async_timeout,
            poll_interval=poll_interval,
        )
    else:
        answer = _invoke(aws, name, body)
    try:
        payload = json.loads(answer)
    except ValueError:
        text = answer.decode("utf-8", "replace")
        raise SmokeTestError(f"endpoint {name!r} answered the smoke request with non-JSON {_preview(text)}") from None
    worst = compare_predictions(
        payload, expected, manifest.signature, rtol=manifest.example.rtol, atol=manifest.example.atol
    )
    rows = len(next(iter(inputs.values()))) if inputs else 0
    return VerifyResult(name, target.expected_config, variants, package, digest, rows, worst, mode)


def _check_variant_package(aws: AwsClients, endpoint: str, variant: Mapping[str, Any], digest: str) -> None:
    model_name = str(variant.get("ModelName"))
    model = aws.call(f"describe model {model_name!r}", lambda: aws.sagemaker.describe_model(ModelName=model_name))
    served = model_data_digest(model)
    if served != digest:
        loads = f"package {served}" if served else "no package by digest"
        raise DeploymentMismatchError(
            f"variant {variant.get('VariantName')!r} of endpoint {endpoint!r} loads {loads} through model "
            f"{model_name!r}, but the stack pins {digest}; run `pulumi up` with the pinned package"
        )


def _fetch(package_uri: str, dest: Path) -> Manifest:
    try:
        return pull(package_uri, dest)
    except CredentialsError as exc:
        raise AwsCredentialsError(f"cannot fetch the package: {exc}") from None
    except ModelPackageError as exc:
        raise PackageError(f"cannot fetch the package {package_uri}: {exc}") from None


def _invoke(aws: AwsClients, name: str, body: bytes) -> bytes:
    # A fresh inference id marks the smoke request in the endpoint's data capture (and keeps every
    # invocation distinct for emulators that cache answers by request).
    inference_id = f"model-deploy-verify-{uuid.uuid4().hex}"
    return aws.call(
        f"invoke endpoint {name!r}",
        lambda: bytes(
            aws.runtime.invoke_endpoint(
                EndpointName=name, Body=body, ContentType=JSON, Accept=JSON, InferenceId=inference_id
            )["Body"].read()
        ),
        not_found=f"endpoint {name!r} does not exist in {aws.region}",
        on_client_error=lambda exc: _raise_invocation_error(exc, name),
    )


def _invoke_async(
    aws: AwsClients,
    name: str,
    body: bytes,
    config: Mapping[str, Any],
    *,
    input_uri: str | None,
    timeout: float,
    poll_interval: float,
) -> bytes:
    """Send the smoke request through the store, as asynchronous endpoints require, and wait for the answer.

    The request goes under ``input_uri`` (a prefix the endpoint's role may read); without one,
    beside the output path in the stack's layout (``…/<endpoint>/output`` -> ``…/<endpoint>/input``),
    else under the output path. It is written without encryption headers, so the bucket's
    default encryption (the store key) applies and the store's bucket policy accepts it, and
    deleted afterwards.
    """
    output = config["AsyncInferenceConfig"].get("OutputConfig") or {}
    bucket, prefix = _split_s3(input_uri or _async_input_prefix(str(output.get("S3OutputPath", ""))))
    key = f"{prefix.rstrip('/')}/model-deploy-verify-{uuid.uuid4().hex}.json".lstrip("/")
    aws.call(
        f"upload the smoke request to s3://{bucket}/{key}",
        lambda: aws.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=JSON),
    )
    try:
        response = aws.call(
            f"invoke async endpoint {name!r}",
            lambda: aws.runtime.invoke_endpoint_async(
                EndpointName=name,
                InputLocation=f"s3://{bucket}/{key}",
                ContentType=JSON,
                Accept=JSON,
                InferenceId=f"model-deploy-verify-{uuid.uuid4().hex}",
            ),
            not_found=f"endpoint {name!r} does not exist in {aws.region}",
            on_client_error=lambda exc: _raise_invocation_error(exc, name),
        )
        locations = [(str(response["OutputLocation"]), False)]
        if response.get("FailureLocation"):
            locations.append((str(response["FailureLocation"]), True))
        deadline = time.monotonic() + timeout
        while True:
            for location, failed in locations:
                data = _read_s3(aws, location)
                if data is not None and failed:
                    text = data.decode("utf-8", "replace")
                    raise SmokeTestError(f"endpoint {name!r} failed the async smoke request: {_preview(text, 160)}")
                if data is not None:
                    return data
            if time.monotonic() >= deadline:
                raise SmokeTestError(
                    f"endpoint {name!r} wrote no answer to {locations[0][0]} within {timeout:g} s; "
                    "see the endpoint's CloudWatch logs"
                )
            time.sleep(poll_interval)
    finally:
        # Best effort: the request is litter, but failing to delete it fails no check.
        with contextlib.suppress(Exception):
            aws.s3.delete_object(Bucket=bucket, Key=key)


def _async_input_prefix(output_path: str) -> str:
    parent, _, last = output_path.rstrip("/").rpartition("/")
    # The stack keeps async/<endpoint>/{input,output,failure} side by side and lets the role read input/.
    return f"{parent}/input" if last == "output" and parent.count("/") >= 2 else output_path


def _read_s3(aws: AwsClients, uri: str) -> bytes | None:
    bucket, key = _split_s3(uri)

    def read() -> bytes | None:
        try:
            return bytes(aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except aws.s3.exceptions.NoSuchKey:
            return None  # not written yet

    return aws.call(f"read {uri}", read)


def _split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or len(uri) <= len("s3://"):
        raise AwsUnavailableError(f"SageMaker reported {uri!r}, which is not an s3:// location")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def _raise_invocation_error(exc: Any, name: str) -> None:
    """Word SageMaker's ``ModelError`` (the container answered with an error) as a smoke failure."""
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    if code == "ModelError":
        status = exc.response.get("OriginalStatusCode", "?")
        original = " ".join(str(exc.response.get("OriginalMessage") or error.get("Message") or "").split())
        logs = exc.response.get("LogStreamArn")
        raise SmokeTestError(
            f"endpoint {name!r} answered the smoke request with HTTP {status}: {_preview(original, 160)}"
            + (f" (logs: {logs})" if logs else "")
        ) from None
    if code == "ModelNotReadyException":
        raise EndpointNotReadyError(
            f"endpoint {name!r} is InService but its model is not ready yet; verify again in a minute"
        ) from None


# --- command line -------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Verify a deployed SageMaker endpoint: InService, on the expected endpoint config, "
        "serving the pinned package, answering its bundled example.",
    )
    parser.add_argument(
        "--stack-outputs", metavar="FILE", help="`pulumi stack output --json` written to FILE ('-' for stdin)"
    )
    parser.add_argument("--endpoint-name", help="endpoint to verify (overrides endpointName)")
    parser.add_argument("--expected-config", help="endpoint config it must run (overrides endpointConfigName)")
    parser.add_argument(
        "--package-uri", help="pinned package URI …/<name>/<digest>/[model.tar.gz] (overrides packageUri)"
    )
    parser.add_argument("--region", help="AWS region (overrides region; default: boto3's)")
    parser.add_argument(
        "--skip-smoke",
        action="store_true",
        help="check status, config and package only (packages whose user code answers another format)",
    )
    parser.add_argument(
        "--async-input",
        metavar="S3_URI",
        help="async endpoints: prefix the endpoint's role may read the smoke request from (overrides asyncInputUri; "
        "default: the input/ prefix beside the endpoint's output path)",
    )
    parser.add_argument(
        "--async-timeout", type=float, default=300.0, metavar="SECONDS", help="wait for an async endpoint's answer"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``model-deploy-verify`` / ``python -m infra.verify_aws``."""
    args = _parser().parse_args(argv)

    def run() -> VerifyResult:
        outputs = load_outputs(args.stack_outputs) if args.stack_outputs else {}
        target = target_from(
            outputs,
            {
                "endpoint_name": args.endpoint_name,
                "expected_config": args.expected_config,
                "package_uri": args.package_uri,
                "region": args.region,
                "async_input_uri": args.async_input,
            },
        )
        return verify(target, skip_smoke=args.skip_smoke, async_timeout=args.async_timeout)

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
