"""Post-deploy verification of a GCP stack: is the Cloud Run service or Vertex AI endpoint serving the package?

``pulumi up`` succeeding is not enough: a Cloud Run revision can pass its startup probe and
still answer with another model, and a Vertex AI rollout can leave the endpoint on the old
deployed model or with no traffic on the new one. So, after every deployment::

    pulumi stack output --json > outputs.json
    python -m infra.verify_gcp --stack-outputs outputs.json      # or: model-deploy-verify-gcp ...

checks, with the caller's Google credentials:

* **Cloud Run** (``serviceUrl``): ``GET <serviceUrl>/health`` answers 200, and the package's
  bundled example (downloaded and digest-verified) posted to ``<serviceUrl>/predict`` as
  ``{"instances": [...]}`` answers with the bundled expected outputs, within the manifest's
  tolerance. Requests carry an identity token for ``serviceUrl`` (the caller needs
  ``roles/run.invoker``) unless ``--no-auth`` (public services).
* **Vertex AI** (``endpointResourceName``): ``GetEndpoint`` lists a deployed model of the stack's
  model (``modelResourceName``; and ``deployedModelId``, when present) with a traffic share
  above 0, and ``PredictionService.Predict`` with the bundled example answers with the bundled
  expected outputs.

It prints one summary line and exits 0, or prints one ``error:`` line on stderr and exits with:

== =========================================================================
2  usage: missing or unreadable outputs, bad flags
3  the service or endpoint does not exist (HTTP 404, NOT_FOUND)
4  the service is not healthy, or the endpoint serves no deployed model
5  the endpoint does not serve the stack's model, or gives it no traffic
6  the smoke prediction failed or its predictions differ
7  no Google credentials, no identity token, or not allowed (HTTP 401/403)
8  the service or Google Cloud is unreachable, or failed otherwise
9  the package could not be fetched or read
== =========================================================================

Stack outputs read (``pulumi stack output --json``): ``target``, ``serviceUrl`` (Cloud Run),
``endpointResourceName`` or ``project``/``region``/``endpointId``, ``modelResourceName`` and
``deployedModelId`` (Vertex), ``packageUri`` and, when present, ``packageDigest`` (checked against
the digest in the URI). Flags override them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np

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
    VerifyError,
    check_package_pin,
    compare_predictions,
    load_outputs,
    output_value,
    preview,
    read_example,
    run_command,
    smoke_summary,
)
from model_package.errors import CredentialsError, ModelPackageError
from model_package.manifest import Manifest
from model_package.publish import parse_package_uri, pull

if TYPE_CHECKING:
    from infra.gcp.vertex_client import DeployedModelInfo, EndpointInfo

PROG: Final = "model-deploy-verify-gcp"
JSON: Final = "application/json"
DEFAULT_HEALTH_ROUTE: Final = "/health"
DEFAULT_PREDICT_ROUTE: Final = "/predict"

Kind = Literal["cloudrun", "vertex"]

#: Stack output names, by the field they fill (first present wins).
OUTPUT_KEYS: Final[Mapping[str, tuple[str, ...]]] = {
    "kind": ("target",),
    "service_url": ("serviceUrl",),
    "endpoint": ("endpointResourceName",),
    "endpoint_id": ("endpointId",),
    "model": ("modelResourceName",),
    "deployed_model_id": ("deployedModelId",),
    "project": ("project",),
    "region": ("region",),
    "package_uri": ("packageUri",),
    "package_digest": ("packageDigest",),
}
_FLAGS: Final = {
    "kind": "--target",
    "service_url": "--service-url",
    "endpoint": "--endpoint",
    "model": "--model",
    "package_uri": "--package-uri",
    "project": "--project",
    "region": "--region",
}
_ENDPOINT_NAME: Final = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/endpoints/[^/]+$")


# --- errors -------------------------------------------------------------------------------------


class GcpCredentialsError(CloudCredentialsError):
    """No usable Google credentials or identity token, or they are not allowed to make a call."""


class GcpUnavailableError(CloudUnavailableError):
    """The service or Google Cloud could not be reached, or failed otherwise."""


# --- what to verify -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One deployment to verify."""

    kind: Kind
    package_uri: str
    service_url: str | None = None
    """Cloud Run: the service's URL (no trailing slash)."""
    endpoint: str | None = None
    """Vertex AI: ``projects/<p>/locations/<r>/endpoints/<id>``."""
    model: str | None = None
    """Vertex AI: the model resource the stack uploaded (``None``: any deployed model will do)."""
    deployed_model_id: str | None = None
    project: str | None = None
    region: str | None = None


def target_from(outputs: Mapping[str, Any], overrides: Mapping[str, str | None]) -> Target:
    """The deployment described by stack outputs, with non-``None`` ``overrides`` (from flags) winning.

    Raises :class:`UsageError` naming the output key and flag of anything missing, and when
    ``packageDigest`` disagrees with the digest in the package URI.
    """
    values: dict[str, str | None] = {}
    for field, keys in OUTPUT_KEYS.items():
        override = overrides.get(field)
        values[field] = override if override else output_value(outputs, keys)
    kind = values["kind"] or ("cloudrun" if values["service_url"] else None)
    if kind is None and (values["endpoint"] or values["endpoint_id"]):
        kind = "vertex"
    if kind not in ("cloudrun", "vertex"):
        if kind is None:
            raise UsageError(
                "nothing says which deployment to verify: missing serviceUrl (or --service-url) for Cloud Run, "
                "or endpointResourceName (or --endpoint) for Vertex AI"
            )
        raise UsageError(f"unknown target {kind!r} (stack output target or --target): choose cloudrun or vertex")
    missing = [field for field in ("package_uri",) if not values[field]]
    endpoint = values["endpoint"]
    project, region = values["project"], values["region"]
    if kind == "cloudrun" and not values["service_url"]:
        missing.insert(0, "service_url")
    if kind == "vertex":
        if not endpoint and values["endpoint_id"] and project and region:
            endpoint = f"projects/{project}/locations/{region}/endpoints/{values['endpoint_id']}"
        if not endpoint:
            missing.insert(0, "endpoint")
    if missing:
        described = "; ".join(f"{OUTPUT_KEYS[field][0]} (or {_FLAGS[field]})" for field in missing)
        raise UsageError(f"nothing says which {kind} deployment to verify: missing {described}")
    if endpoint is not None and kind == "vertex":
        match = _ENDPOINT_NAME.match(endpoint)
        if match is None:
            raise UsageError(
                f"endpoint {endpoint!r} (endpointResourceName or --endpoint) is not "
                "projects/<project>/locations/<region>/endpoints/<id>"
            )
        project, region = match["project"], match["region"]
    package_uri = str(values["package_uri"])
    check_package_pin(package_uri, values.get("package_digest"))
    service_url = values["service_url"]
    return Target(
        kind="cloudrun" if kind == "cloudrun" else "vertex",
        package_uri=package_uri,
        service_url=service_url.rstrip("/") if service_url and kind == "cloudrun" else None,
        endpoint=endpoint if kind == "vertex" else None,
        model=values["model"] if kind == "vertex" else None,
        deployed_model_id=values["deployed_model_id"] if kind == "vertex" else None,
        project=project,
        region=region,
    )


@dataclass(frozen=True)
class VerifyResult:
    """What a successful verification found."""

    target: Target
    package: str
    """``<name>@<version>``."""
    digest: str
    rows: int | None
    """Rows of the smoke request; ``None`` when skipped."""
    max_abs_error: float | None
    serving: str
    """Cloud Run: the health route; Vertex AI: the deployed models with traffic."""

    def summary(self) -> str:
        """The one line the command prints."""
        smoke = smoke_summary(self.rows, self.max_abs_error)
        package = f"{self.package} digest {self.digest[:12]}"
        if self.target.kind == "cloudrun":
            service = self.target.service_url
            return f"OK: Cloud Run service {service} is healthy ({self.serving}), serving {package}; {smoke}"
        return f"OK: Vertex AI endpoint {self.target.endpoint} serves {self.serving}, package {package}; {smoke}"


# --- the package --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Smoke:
    manifest: Manifest
    body: bytes
    """``{"instances": [...]}``: the bundled example inputs as the serving container reads them."""
    expected: dict[str, np.ndarray]
    rows: int


def _package(package_uri: str, workdir: Path | None, *, skip_smoke: bool) -> tuple[Manifest, _Smoke | None]:
    with tempfile.TemporaryDirectory(prefix="model-deploy-verify-", dir=workdir) as scratch:
        package_dir = Path(scratch) / "package"
        try:
            manifest = pull(package_uri, package_dir)
        except CredentialsError as exc:
            raise GcpCredentialsError(f"cannot fetch the package: {exc}") from None
        except ModelPackageError as exc:
            raise PackageError(f"cannot fetch the package {package_uri}: {exc}") from None
        if skip_smoke:
            return manifest, None
        inputs, expected = read_example(package_dir, manifest)
    body = encode_request(inputs, JSON, manifest.signature)
    rows = len(next(iter(inputs.values()))) if inputs else 0
    return manifest, _Smoke(manifest, body, expected, rows)


def _compare(payload: Any, smoke: _Smoke) -> float:
    example = smoke.manifest.example
    return compare_predictions(payload, smoke.expected, smoke.manifest.signature, rtol=example.rtol, atol=example.atol)


# --- Cloud Run ----------------------------------------------------------------------------------


def identity_token(audience: str) -> str:
    """An identity token for ``audience`` from the caller's Google credentials (one-line errors).

    Works under Workload Identity Federation too (the CI case): see :mod:`infra.gcp_id_token`.
    """
    from infra import gcp_id_token

    try:
        return gcp_id_token.fetch(audience)
    except gcp_id_token.IdTokenError as exc:
        if exc.kind == "credentials":
            raise GcpCredentialsError(str(exc)) from None
        raise GcpUnavailableError(str(exc)) from None


def _http(method: str, url: str, *, body: bytes | None, token: str | None, timeout: float) -> tuple[int, bytes]:
    headers = {"Accept": JSON, "User-Agent": PROG}
    if body is not None:
        headers["Content-Type"] = JSON
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, str) else _one_line(str(exc.reason) or type(exc.reason).__name__)
        raise GcpUnavailableError(
            f"cannot reach {url}: {reason}; check serviceUrl and that the service is deployed"
        ) from None
    except TimeoutError:
        raise GcpUnavailableError(f"{method} {url} got no answer within {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise GcpUnavailableError(f"cannot reach {url}: {_one_line(str(exc)) or type(exc).__name__}") from None


def _check_auth(status: int, url: str, what: str, *, authenticated: bool) -> None:
    if status not in (401, 403):
        return
    if authenticated:
        raise GcpCredentialsError(
            f"the service refused the identity token to {what} (HTTP {status} from {url}): the caller needs "
            "roles/run.invoker on the service, and serviceUrl must be the service's own URL (the token's audience)"
        )
    raise GcpCredentialsError(
        f"the service requires authentication to {what} (HTTP {status} from {url}): drop --no-auth and run "
        "with credentials allowed to invoke it (roles/run.invoker)"
    )


def verify_cloud_run(
    target: Target,
    *,
    auth: bool = True,
    health_route: str = DEFAULT_HEALTH_ROUTE,
    predict_route: str = DEFAULT_PREDICT_ROUTE,
    timeout: float = 300.0,
    skip_smoke: bool = False,
    workdir: Path | None = None,
) -> VerifyResult:
    """Health and smoke prediction of a Cloud Run service; raise a :class:`VerifyError` at the first failure."""
    assert target.service_url is not None
    base = target.service_url
    token = identity_token(base) if auth else None
    health_url = base + health_route
    status, answer = _http("GET", health_url, body=None, token=token, timeout=min(timeout, 60.0))
    _check_auth(status, health_url, "check its health", authenticated=token is not None)
    if status == 404:
        raise EndpointNotFoundError(
            f"GET {health_url} answered HTTP 404: no service at serviceUrl, or its health route is not "
            f"{health_route} (--health-route)"
        )
    if status != 200:
        raise EndpointNotReadyError(
            f"service {base} is not healthy: GET {health_route} answered HTTP {status} {preview(_text(answer))}; "
            "see the service's logs in Cloud Logging"
        )
    manifest, smoke = _package(target.package_uri, workdir, skip_smoke=skip_smoke)
    package, digest = f"{manifest.name}@{manifest.version}", str(parse_package_uri(target.package_uri).digest)
    serving = f"{health_route} 200"
    if smoke is None:
        return VerifyResult(target, package, digest, None, None, serving)
    predict_url = base + predict_route
    status, answer = _http("POST", predict_url, body=smoke.body, token=token, timeout=timeout)
    _check_auth(status, predict_url, "predict", authenticated=token is not None)
    if status != 200:
        raise SmokeTestError(
            f"service {base} answered the smoke request to {predict_route} with HTTP {status}: "
            f"{preview(_text(answer), 160)}"
        )
    try:
        payload = json.loads(answer)
    except ValueError:
        raise SmokeTestError(
            f"service {base} answered the smoke request with non-JSON {preview(_text(answer))}"
        ) from None
    worst = _compare(payload, smoke)
    return VerifyResult(target, package, digest, smoke.rows, worst, serving)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- Vertex AI ----------------------------------------------------------------------------------


@contextmanager
def _google(
    action: str, *, not_found: str | None = None, failure: type[VerifyError] = GcpUnavailableError
) -> Iterator[None]:
    """Google client errors (and :class:`VertexError` s wrapping them) as one-line :class:`VerifyError` s."""
    import google.auth.exceptions
    from google.api_core import exceptions

    from infra.gcp.vertex_client import VertexError, VertexNotFound

    try:
        yield
    except VertexNotFound as exc:
        raise EndpointNotFoundError(not_found or str(exc)) from None
    except (VertexError, exceptions.GoogleAPIError, google.auth.exceptions.GoogleAuthError) as exc:
        cause = exc.__cause__ if isinstance(exc, VertexError) and exc.__cause__ is not None else exc
        message = _one_line(str(getattr(cause, "message", None) or cause))
        if isinstance(cause, exceptions.NotFound):
            raise EndpointNotFoundError(not_found or f"cannot {action}: not found ({message})") from None
        if isinstance(cause, exceptions.Unauthenticated | exceptions.PermissionDenied):
            raise GcpCredentialsError(f"not allowed to {action}: {message}") from None
        if isinstance(cause, google.auth.exceptions.DefaultCredentialsError):
            raise GcpCredentialsError(
                f"cannot {action}: no Google credentials ({message}); run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from None
        if isinstance(cause, google.auth.exceptions.GoogleAuthError):
            raise GcpCredentialsError(f"cannot {action}: Google credentials failed ({message})") from None
        if isinstance(
            cause,
            exceptions.ServiceUnavailable
            | exceptions.DeadlineExceeded
            | exceptions.TooManyRequests
            | exceptions.RetryError,
        ):
            raise GcpUnavailableError(
                f"cannot reach Vertex AI to {action} ({type(cause).__name__}: {message}); check the network and "
                "--api-endpoint, and retry"
            ) from None
        if isinstance(cause, exceptions.GoogleAPICallError):
            code = cause.grpc_status_code.name if cause.grpc_status_code is not None else str(cause.code)
            raise failure(f"cannot {action}: {code}: {message}") from None
        raise failure(f"cannot {action}: {message}") from None


def _model_name(name: str) -> str:
    return name.split("@", 1)[0]  # Vertex may name a model version as <model>@<version id>


def check_deployment(
    info: EndpointInfo, model: str | None, deployed_model_id: str | None = None
) -> tuple[DeployedModelInfo, ...]:
    """The deployed models of the stack's model that take traffic; raise unless there is one."""
    name = info.name
    deployed = ", ".join(f"{m.id} ({m.model})" for m in info.deployed_models) or "none"
    if not info.deployed_models:
        raise EndpointNotReadyError(
            f"endpoint {name} has no deployed model; the deployment failed or was undone: run `pulumi up` again"
        )
    candidates = list(info.deployed_models)
    if model:
        candidates = [m for m in candidates if _model_name(m.model) == _model_name(model)]
        if not candidates:
            raise DeploymentMismatchError(
                f"endpoint {name} has no deployed model of {model} (deployed: {deployed}); the rollout failed or "
                "was undone: see the endpoint in the Vertex AI console and run `pulumi up` again"
            )
    if deployed_model_id:
        candidates = [m for m in candidates if m.id == deployed_model_id]
        if not candidates:
            of = f" of {model}" if model else ""
            raise DeploymentMismatchError(
                f"endpoint {name} has no deployed model {deployed_model_id}{of} (deployed: {deployed}); "
                "re-export the outputs after `pulumi up`, or run `pulumi up` again"
            )
    live = tuple(m for m in candidates if info.traffic_split.get(m.id, 0) > 0)
    if not live:
        ids = ", ".join(m.id for m in candidates)
        what = f"model {model} (deployed model {ids})" if model else f"deployed model {ids}"
        raise DeploymentMismatchError(
            f"{what} receives no traffic on endpoint {name} (traffic split {info.traffic_split or {}}); "
            "the rollout did not finish: run `pulumi up` again"
        )
    return live


def _prediction_client(api_endpoint: str) -> tuple[Any, Any]:
    """A ``PredictionServiceClient`` for ``api_endpoint`` and the channel it owns (see ``infra.loopback``)."""
    from google.cloud import aiplatform_v1
    from google.cloud.aiplatform_v1.services.prediction_service.transports.grpc import (
        PredictionServiceGrpcTransport,
    )

    from infra.loopback import gapic_client

    return gapic_client(aiplatform_v1.PredictionServiceClient, PredictionServiceGrpcTransport, api_endpoint)


def vertex_predict(endpoint: str, instances: list[Any], *, api_endpoint: str, timeout: float) -> tuple[Any, str]:
    """``Predict`` on ``endpoint``: the ``{"predictions": [...]}`` answer and the deployed model that gave it."""
    from google.cloud import aiplatform_v1
    from google.protobuf import json_format, struct_pb2

    values = [json_format.ParseDict(instance, struct_pb2.Value()) for instance in instances]
    # Built as protobuf: proto-plus cannot marshal a list of Values into a repeated Value field.
    request = aiplatform_v1.PredictRequest.wrap(aiplatform_v1.PredictRequest.pb()(endpoint=endpoint, instances=values))
    with _google(f"create a Vertex AI prediction client for {api_endpoint}"):
        client, channel = _prediction_client(api_endpoint)
    try:
        with _google(
            f"predict on endpoint {endpoint}",
            not_found=f"endpoint {endpoint} does not exist (Predict answered NOT_FOUND)",
            failure=SmokeTestError,
        ):
            response = client.predict(request=request, timeout=timeout)
    finally:
        if channel is not None:
            channel.close()
    message = json_format.MessageToDict(aiplatform_v1.PredictResponse.pb(response))
    return {"predictions": message.get("predictions", [])}, str(response.deployed_model_id)


def verify_vertex(
    target: Target,
    *,
    api_endpoint: str | None = None,
    timeout: float = 120.0,
    skip_smoke: bool = False,
    workdir: Path | None = None,
) -> VerifyResult:
    """Deployment and smoke prediction of a Vertex AI endpoint; raise a :class:`VerifyError` at the first failure."""
    from infra.gcp.vertex_client import VertexClient, default_api_endpoint

    assert target.endpoint is not None and target.project is not None and target.region is not None
    endpoint = target.endpoint
    api = api_endpoint or default_api_endpoint(target.region)
    with _google(f"connect to Vertex AI at {api}"):
        client = VertexClient(target.project, target.region, api_endpoint=api)
    try:
        with _google(
            f"get endpoint {endpoint}",
            not_found=f"endpoint {endpoint} does not exist; check endpointResourceName in the stack outputs, "
            "and that `pulumi up` finished",
        ):
            info = client.get_endpoint(endpoint)
    finally:
        client.close()
    live = check_deployment(info, target.model, target.deployed_model_id)
    share = sum(info.traffic_split.get(m.id, 0) for m in live)
    of = f"model {target.model} as " if target.model else ""
    serving = f"{of}deployed model {', '.join(m.id for m in live)} ({share}% of traffic)"
    manifest, smoke = _package(target.package_uri, workdir, skip_smoke=skip_smoke)
    package, digest = f"{manifest.name}@{manifest.version}", str(parse_package_uri(target.package_uri).digest)
    if smoke is None:
        return VerifyResult(target, package, digest, None, None, serving)
    instances = json.loads(smoke.body)["instances"]
    payload, answered_by = vertex_predict(endpoint, instances, api_endpoint=api, timeout=timeout)
    try:
        worst = _compare(payload, smoke)
    except SmokeTestError as exc:
        raise SmokeTestError(f"deployed model {answered_by or '?'}: {exc}") from None
    return VerifyResult(target, package, digest, smoke.rows, worst, serving)


# --- command line -------------------------------------------------------------------------------


def _route(value: str) -> str:
    if not value.startswith("/"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a route; routes start with /")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Verify a deployed Cloud Run service or Vertex AI endpoint: healthy, serving the stack's "
        "model, answering the package's bundled example.",
    )
    parser.add_argument(
        "--stack-outputs", metavar="FILE", help="`pulumi stack output --json` written to FILE ('-' for stdin)"
    )
    parser.add_argument("--target", choices=["cloudrun", "vertex"], help="overrides target (default: from outputs)")
    parser.add_argument("--service-url", help="Cloud Run: the service URL (overrides serviceUrl)")
    parser.add_argument(
        "--endpoint", help="Vertex AI: projects/<p>/locations/<r>/endpoints/<id> (overrides endpointResourceName)"
    )
    parser.add_argument("--model", help="Vertex AI: model resource that must be deployed (overrides modelResourceName)")
    parser.add_argument(
        "--package-uri", help="pinned package URI …/<name>/<digest>/[model.tar.gz] (overrides packageUri)"
    )
    parser.add_argument("--project", help="GCP project (overrides project)")
    parser.add_argument("--region", help="GCP region (overrides region)")
    parser.add_argument(
        "--api-endpoint",
        metavar="HOST:PORT",
        help="Vertex AI: API endpoint (default: <region>-aiplatform.googleapis.com; loopback: plain-text test server)",
    )
    parser.add_argument(
        "--no-auth", action="store_true", help="Cloud Run: send no identity token (public services only)"
    )
    parser.add_argument("--health-route", type=_route, default=DEFAULT_HEALTH_ROUTE, help="Cloud Run health route")
    parser.add_argument("--predict-route", type=_route, default=DEFAULT_PREDICT_ROUTE, help="Cloud Run predict route")
    parser.add_argument(
        "--timeout", type=float, default=300.0, metavar="SECONDS", help="wait this long for the smoke prediction"
    )
    parser.add_argument(
        "--skip-smoke",
        action="store_true",
        help="check health / deployment and the package only (packages whose user code answers another format)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``model-deploy-verify-gcp`` / ``python -m infra.verify_gcp``."""
    args = _parser().parse_args(argv)

    def run() -> VerifyResult:
        outputs = load_outputs(args.stack_outputs) if args.stack_outputs else {}
        target = target_from(
            outputs,
            {
                "kind": args.target,
                "service_url": args.service_url,
                "endpoint": args.endpoint,
                "model": args.model,
                "package_uri": args.package_uri,
                "project": args.project,
                "region": args.region,
            },
        )
        if target.kind == "cloudrun":
            return verify_cloud_run(
                target,
                auth=not args.no_auth,
                health_route=args.health_route,
                predict_route=args.predict_route,
                timeout=args.timeout,
                skip_smoke=args.skip_smoke,
            )
        return verify_vertex(target, api_endpoint=args.api_endpoint, timeout=args.timeout, skip_smoke=args.skip_smoke)

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
