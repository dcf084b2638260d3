"""Carrying an autoscaled variant's live instance count into the endpoint config a rollout creates.

The provider's ``UpdateEndpoint`` sends only the endpoint config's name and the deployment
config, never ``RetainAllVariantProperties`` (``resourceEndpointUpdate`` in the Terraform AWS
provider's ``internal/service/sagemaker/endpoint.go``), and the API's default for it is false:
"To use the variant properties specified in a new EndpointConfig call when updating an endpoint,
set RetainAllVariantProperties to false. The default is false" (SageMaker API reference,
UpdateEndpoint). So every rollout starts the new fleet at ``InitialInstanceCount`` and shifts all
traffic onto it, even when autoscaling has the old fleet at 8.

The count the new config declares therefore comes from the endpoint itself, in three steps:

1. before ``pulumi up``, the deploy job reads each variant's ``DesiredInstanceCount``
   (``model-deploy-live-capacity``, :mod:`infra.capacity_aws`) into
   ``MODEL_DEPLOY_LIVE_INSTANCE_COUNTS``;
2. the program stores it in a ``pulumi.Stash`` whose *output* keeps the value it had when the
   stash was created ("The output value is stateful and persists the original input value even
   when the input property is updated", Pulumi docs, Stash), replaced exactly when the endpoint
   config is (its ``replacement_trigger`` is :func:`config_fingerprint`);
3. the config's ``initial_instance_count`` is that output, within the autoscaling bounds.

A deploy that creates no new config (alarm thresholds, say) only updates the stash's input; a
deploy that does starts the new fleet at the live count. Without the variable (pull-request
previews, drift checks, a local ``pulumi up``) the stash ignores its input (``ignore_changes``:
the engine keeps the stored input, Pulumi docs, ignoreChanges), so nothing reports a difference
just because autoscaling moved.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Final

from infra.config import ConfigError, StackConfig, VariantSettings

#: Set by the deploy job from ``model-deploy-live-capacity``: ``{"<variant>": <desired instances>}``.
LIVE_COUNTS_VARIABLE: Final = "MODEL_DEPLOY_LIVE_INSTANCE_COUNTS"


def live_counts_from_environment(environ: Mapping[str, str]) -> dict[str, int] | None:
    """The live instance counts the deploy job passed, or ``None`` when it passed none.

    Raises :class:`ConfigError` naming the variable when the value is not a JSON object of
    variant names to positive integers.
    """
    text = environ.get(LIVE_COUNTS_VARIABLE)
    if text is None or not text.strip():
        return None
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(count, int) and not isinstance(count, bool) and count >= 1
        for key, count in value.items()
    ):
        raise ConfigError(
            LIVE_COUNTS_VARIABLE,
            text,
            'is not a JSON object of variant names to instance counts >= 1, like {"primary": 4}; '
            "set it from model-deploy-live-capacity or leave it unset",
        )
    return dict(value)


def carried_variants(config: StackConfig) -> tuple[VariantSettings, ...]:
    """The variants whose instance count autoscaling owns: instance-based production variants."""
    endpoint = config.require_aws().endpoint
    if endpoint.autoscaling is None or endpoint.mode == "serverless":
        return ()
    return tuple(variant for variant in endpoint.variants if variant.serverless is None)


def stash_input(config: StackConfig, live: Mapping[str, int] | None) -> dict[str, int]:
    """What the stash stores: the live count of each carried variant, else its configured count."""
    live = live or {}
    return {
        variant.name: live.get(variant.name, variant.initial_instance_count) for variant in carried_variants(config)
    }


def initial_counts(config: StackConfig, saved: Mapping[str, int]) -> dict[str, int]:
    """The counts a new config declares: the saved ones within the autoscaling bounds, else the configured."""
    scaling = config.require_aws().endpoint.autoscaling
    low = scaling.min_instances if scaling is not None else None
    high = scaling.max_instances if scaling is not None else None
    counts: dict[str, int] = {}
    for variant in carried_variants(config):
        count = int(saved.get(variant.name, variant.initial_instance_count))
        if low is not None:
            count = max(count, low)
        if high is not None:
            count = min(count, high)
        counts[variant.name] = count
    return counts


def config_fingerprint(config: StackConfig) -> str:
    """A digest of every setting that makes ``pulumi up`` create a new endpoint config, counts aside.

    The model's inputs (package, image, container environment, network, role path by environment)
    and the config's own (variants, shadow, data capture, async, the store's key and bucket).
    Alarms, autoscaling, the rollout strategy and tags change in place and are left out, so
    changing them does not move the carried count.
    """
    aws = config.require_aws()
    endpoint = aws.endpoint
    # Imported here: infra.aws.endpoint imports this module.
    from infra.aws.endpoint import container_environment

    relevant = {
        "environment": config.environment,
        "region": config.aws_region,
        "package": config.package.model_dump(mode="json"),
        "container": container_environment(config),
        "endpoint": endpoint.model_dump(
            mode="json",
            include={"name", "mode", "network_isolation_setting", "vpc", "shadow_variant", "data_capture"},
        ),
        "async": endpoint.async_settings.model_dump(mode="json") if endpoint.async_settings else None,
        "variants": [
            variant.model_dump(mode="json", exclude={"initial_instance_count"}) for variant in endpoint.variants
        ],
        "store": aws.store.model_dump(mode="json", include={"create", "bucket_name", "kms_key_arn"}),
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()
