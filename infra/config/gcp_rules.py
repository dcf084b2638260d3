"""Cross-field rules for GCP stacks: what Cloud Run, Vertex AI or Cloud Storage would reject.

Each rule cites its reason in the message; the pages the limits come from are cited in
:mod:`infra.config.gcp_limits`. Like :mod:`infra.config.aws_rules`, the rules only look at
stacks whose cloud is gcp (the common rules report a missing section).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from infra.config import gcp_limits
from infra.config.errors import MISSING, ConfigError, format_key
from infra.config.gcp_settings import CloudRunSettings, GcpConfig, VertexSettings
from infra.config.schema import PROJECT, StackConfig

GCP_KEY: Final = f"{PROJECT}:gcp"
PACKAGE_KEY: Final = f"{PROJECT}:package"


def _key(*parts: str | int) -> str:
    return format_key((GCP_KEY, *parts))


def _gcp(config: StackConfig) -> GcpConfig | None:
    return config.gcp if config.cloud == "gcp" else None


def target_sections(config: StackConfig) -> Iterator[ConfigError]:
    """The chosen target's section is present; the other target's is not."""
    gcp = _gcp(config)
    if gcp is None:
        return
    sections = {"cloudrun": ("cloudRun", gcp.cloud_run), "vertex": ("vertex", gcp.vertex)}
    for target, (key, section) in sections.items():
        if target == gcp.target and section is None:
            yield ConfigError(_key(key), MISSING, f"is required because {GCP_KEY}.target is {target}")
        elif target != gcp.target and section is not None:
            yield ConfigError(
                _key(key), MISSING, f"is set but {GCP_KEY}.target is {gcp.target}: remove it (one stack, one target)"
            )


def target_region(config: StackConfig) -> Iterator[ConfigError]:
    """The region offers the chosen target."""
    gcp = _gcp(config)
    if gcp is None:
        return
    if gcp.target == "cloudrun" and gcp.region not in gcp_limits.CLOUD_RUN_REGIONS:
        yield ConfigError(
            _key("region"), gcp.region, "is not a Cloud Run region (https://cloud.google.com/run/docs/locations)"
        )
    if gcp.target == "vertex" and gcp.region not in gcp_limits.vertex_regions():
        yield ConfigError(
            _key("region"), gcp.region, "is not a Vertex AI region (google-cloud-aiplatform SUPPORTED_REGIONS)"
        )


def package_location(config: StackConfig) -> Iterator[ConfigError]:
    """The package is in the stack's bucket and the image in its repository: the service may read nothing else."""
    gcp = _gcp(config)
    if gcp is None:
        return
    package = config.package
    location = package.ref.location
    if location.scheme != "gs":
        yield ConfigError(
            format_key((PACKAGE_KEY, "uri")),
            package.uri,
            "is not in Cloud Storage: a gcp stack serves packages from gs://…, as printed by `model-package push gs://…`",
        )
    elif gcp.store.bucket_name is not None and location.bucket != gcp.store.bucket_name:
        yield ConfigError(
            _key("store", "bucketName"),
            gcp.store.bucket_name,
            f"is not the bucket of {PACKAGE_KEY}.uri ({location.bucket!r}): the service may read its own bucket only",
        )
    image = package.image_ref
    expected = f"{gcp.repository_url}/"
    if image.registry != gcp.registry_host or not f"{image.registry}/{image.repository}".startswith(expected):
        yield ConfigError(
            format_key((PACKAGE_KEY, "image")),
            package.image,
            f"is not in the stack's Artifact Registry repository: expected {expected}<image>@sha256:<64 hex> "
            "(the service may pull from this repository only)",
        )


def store(config: StackConfig) -> Iterator[ConfigError]:
    """Prod never force-destroys packages."""
    gcp = _gcp(config)
    if gcp is not None and config.is_prod and gcp.store.force_destroy:
        yield ConfigError(
            _key("store", "forceDestroy"),
            True,
            "is not allowed in prod: `pulumi destroy` would delete every package version in the bucket",
        )


def _cloud_run(config: StackConfig) -> CloudRunSettings | None:
    gcp = _gcp(config)
    return gcp.cloud_run if gcp is not None and gcp.target == "cloudrun" else None


def cloud_run_resources(config: StackConfig) -> Iterator[ConfigError]:
    """CPU and memory fit together (Cloud Run's CPU and memory-limit pages)."""
    run = _cloud_run(config)
    if run is None:
        return
    millicpu, mib = run.millicpu, run.memory_mib
    memory_key = _key("cloudRun", "memory")
    for above_mib, cpus in gcp_limits.CLOUD_RUN_MEMORY_MIN_CPUS:
        if mib > above_mib and millicpu < cpus * 1000:
            yield ConfigError(
                memory_key,
                run.memory,
                f"needs at least {cpus} CPU (cloudRun.cpu is {run.cpu!r}): Cloud Run requires {cpus} CPU for "
                f"more than {above_mib // 1024}Gi",
            )
            break
    for cpus, min_mib in gcp_limits.CLOUD_RUN_CPU_MIN_MEMORY_MIB:
        if millicpu == cpus * 1000 and mib < min_mib:
            yield ConfigError(
                memory_key, run.memory, f"is too little for {cpus} CPU: Cloud Run requires at least {min_mib // 1024}Gi"
            )
    if millicpu < 1000:
        cpu_key = _key("cloudRun", "cpu")
        if mib > gcp_limits.CLOUD_RUN_SUB_CPU_MAX_MEMORY_MIB or (
            millicpu < 500 and mib > gcp_limits.CLOUD_RUN_HALF_CPU_MAX_MEMORY_MIB
        ):
            yield ConfigError(
                cpu_key,
                run.cpu,
                f"is too little for {run.memory}: Cloud Run needs 500m for more than 512Mi and 1 CPU for more than 1Gi",
            )
        if run.concurrency != 1:
            yield ConfigError(
                _key("cloudRun", "concurrency"),
                run.concurrency,
                "must be 1 with less than one CPU (Cloud Run CPU limits)",
            )
        if run.package_delivery == "mount":
            yield ConfigError(
                cpu_key,
                run.cpu,
                "is less than one CPU, which runs in the first-generation environment; Cloud Storage volumes "
                "(packageDelivery mount) need the second generation: use at least 1 CPU or packageDelivery fetch",
            )


def cloud_run_gpu(config: StackConfig) -> Iterator[ConfigError]:
    """A GPU needs 4 CPU, 16 GiB, one GPU, and a GPU region (Cloud Run GPU page)."""
    run = _cloud_run(config)
    gcp = _gcp(config)
    if run is None or run.gpu is None or gcp is None:
        return
    if run.gpu.count != gcp_limits.CLOUD_RUN_GPU_COUNT:
        yield ConfigError(
            _key("cloudRun", "gpu", "count"), run.gpu.count, "must be 1: Cloud Run attaches one GPU per instance"
        )
    if run.millicpu < gcp_limits.CLOUD_RUN_GPU_MIN_CPUS * 1000:
        yield ConfigError(
            _key("cloudRun", "cpu"), run.cpu, "is too little for a GPU: Cloud Run requires at least 4 CPU"
        )
    if run.memory_mib < gcp_limits.CLOUD_RUN_GPU_MIN_MEMORY_MIB:
        yield ConfigError(
            _key("cloudRun", "memory"), run.memory, "is too little for a GPU: Cloud Run requires at least 16Gi"
        )
    if gcp.region not in gcp_limits.CLOUD_RUN_GPU_REGIONS:
        yield ConfigError(
            _key("region"),
            gcp.region,
            f"has no Cloud Run GPUs: use one of {', '.join(sorted(gcp_limits.CLOUD_RUN_GPU_REGIONS))}",
        )


def cloud_run_service(config: StackConfig) -> Iterator[ConfigError]:
    """Scaling bounds, package delivery and deletion protection."""
    run = _cloud_run(config)
    if run is None:
        return
    if run.min_instances > run.max_instances:
        yield ConfigError(
            _key("cloudRun", "minInstances"),
            run.min_instances,
            f"is more than cloudRun.maxInstances ({run.max_instances})",
        )
    if run.package_delivery == "mount" and config.package.layout != "uncompressed":
        yield ConfigError(
            _key("cloudRun", "packageDelivery"),
            run.package_delivery,
            f"needs the uncompressed layout, but {PACKAGE_KEY}.uri is a model.tar.gz: push with "
            "`--layout uncompressed` and pin the …/<digest>/ prefix, or use packageDelivery fetch",
        )
    gcp = config.require_gcp()
    if config.is_prod and run.deletion_protection is False and not gcp.decommissioning(config.stack):
        yield ConfigError(
            _key("cloudRun", "deletionProtection"),
            False,
            "is not allowed in prod: production services are protected from `pulumi destroy`; to destroy "
            f"this stack, also set {_key('decommission')}: {config.stack} (README: destroying a GCP prod stack)",
        )


def decommission(config: StackConfig) -> Iterator[ConfigError]:
    """``decommission`` names this very stack, and on Cloud Run in prod comes with deletion protection off.

    Two settings, each useless alone, so a prod stack is never unprotected by one slip; the stack's
    name, so a decommissioned stack's config copied to another stack unprotects nothing there.
    """
    gcp = _gcp(config)
    if gcp is None or gcp.decommission is None:
        return
    key = _key("decommission")
    if gcp.decommission != config.stack:
        yield ConfigError(
            key,
            gcp.decommission,
            f"names another stack: set it to this stack's own name ({config.stack}) to decommission it",
        )
        return
    if not gcp_limits.LABEL_VALUE_RE.match(config.stack):
        yield ConfigError(
            key,
            gcp.decommission,
            "cannot be a GCP label value (the policy pack reads it from one): the stack name needs 0-63 of a-z 0-9 _ -",
        )
    run = _cloud_run(config)
    if config.is_prod and run is not None and run.deletion_protection is not False:
        yield ConfigError(
            key,
            gcp.decommission,
            f"needs {_key('cloudRun', 'deletionProtection')}: false as well, deliberately: both settings are "
            "required to let `pulumi destroy` delete a production service",
        )


def _vertex(config: StackConfig) -> VertexSettings | None:
    gcp = _gcp(config)
    return gcp.vertex if gcp is not None and gcp.target == "vertex" else None


def vertex_machine(config: StackConfig) -> Iterator[ConfigError]:
    """Replica bounds, and the accelerator fits the machine (Vertex AI "Configure compute resources")."""
    vertex = _vertex(config)
    if vertex is None:
        return
    if vertex.min_replicas > vertex.max_replicas:
        yield ConfigError(
            _key("vertex", "minReplicas"),
            vertex.min_replicas,
            f"is more than vertex.maxReplicas ({vertex.max_replicas})",
        )
    count_key = _key("vertex", "acceleratorCount")
    if vertex.accelerator_type is None:
        if vertex.accelerator_count:
            yield ConfigError(count_key, vertex.accelerator_count, "needs vertex.acceleratorType")
        if vertex.accelerator_duty_cycle_target is not None:
            yield ConfigError(
                _key("vertex", "acceleratorDutyCycleTarget"),
                vertex.accelerator_duty_cycle_target,
                "needs vertex.acceleratorType: there is no accelerator to measure",
            )
    elif vertex.accelerator_count == 0:
        yield ConfigError(count_key, 0, f"must be at least 1 with vertex.acceleratorType {vertex.accelerator_type}")
    match = gcp_limits.VERTEX_MACHINE_TYPE_RE.match(vertex.machine_type)
    if match is None:
        return  # the schema already refused it
    series, size, suffix = match.group("series"), int(match.group("size")), match.group("suffix")
    allowed = gcp_limits.VERTEX_MACHINE_SERIES.get(series, ())
    type_key = _key("vertex", "acceleratorType")
    if vertex.accelerator_type is not None and vertex.accelerator_type not in allowed:
        takes = f"takes {', '.join(allowed)} only" if allowed else "takes no accelerator"
        yield ConfigError(type_key, vertex.accelerator_type, f"does not fit {vertex.machine_type}, which {takes}")
    elif vertex.accelerator_type is None and series in gcp_limits.VERTEX_FIXED_GPU_SERIES | {"g2-standard"}:
        yield ConfigError(type_key, MISSING, f"is required: {vertex.machine_type} comes with {', '.join(allowed)}")
    elif vertex.accelerator_count:
        fixed: int | None = None
        if series in gcp_limits.VERTEX_FIXED_GPU_SERIES and suffix == "g":
            fixed = size
        elif series == "g2-standard":
            fixed = gcp_limits.G2_GPU_COUNTS.get(size)
        if fixed is not None and vertex.accelerator_count != fixed:
            yield ConfigError(
                count_key, vertex.accelerator_count, f"must be {fixed}: {vertex.machine_type} has {fixed}"
            )
        elif series.startswith("n1-") and vertex.accelerator_count not in gcp_limits.N1_GPU_COUNTS:
            yield ConfigError(count_key, vertex.accelerator_count, "must be 1, 2, 4 or 8 on an n1 machine")


def labels(config: StackConfig) -> Iterator[ConfigError]:
    """User tags are valid GCP labels as they are, and the stack's labels fit the 64-label limit."""
    if _gcp(config) is None:
        return
    for key, value in config.tags.items():
        where = format_key((f"{PROJECT}:tags", key))
        if not gcp_limits.LABEL_KEY_RE.match(key):
            yield ConfigError(
                where, key, "is not a GCP label key: use 1-63 of a-z 0-9 _ -, starting with a lowercase letter"
            )
        elif not gcp_limits.LABEL_VALUE_RE.match(value):
            yield ConfigError(where, value, "is not a GCP label value: use 0-63 of a-z 0-9 _ -")
    if len(config.resource_labels) > gcp_limits.MAX_LABELS:
        yield ConfigError(
            f"{PROJECT}:tags",
            config.tags,
            f"are too many: GCP allows {gcp_limits.MAX_LABELS} labels and the stack sets "
            f"{len(config.resource_labels) - len(config.tags)} itself",
        )


GCP_RULES = (
    target_sections,
    target_region,
    package_location,
    store,
    cloud_run_resources,
    cloud_run_gpu,
    cloud_run_service,
    decommission,
    vertex_machine,
    labels,
)
