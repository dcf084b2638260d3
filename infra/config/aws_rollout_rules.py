"""Rules that keep an AWS rollout inside what the provider and the pipeline can wait for.

Sources of the limits (cited where the number is used):

* the Terraform AWS provider (which pulumi-aws wraps) waits for ``InService`` after
  ``UpdateEndpoint`` for a fixed 60 minutes: ``waitEndpointInService`` in
  ``internal/service/sagemaker/endpoint.go`` has ``timeout = 60 * time.Minute`` and the resource
  declares no ``Timeouts`` block, so Pulumi's ``customTimeouts`` cannot lengthen it;
* the CI deploy role's session lasts one hour (``max_session_duration=3600`` in
  ``infra/bootstrap/aws.py``), and it covers the whole job, not just the endpoint update;
* the endpoint's ``name`` and ``deployment_config.auto_rollback_configuration`` are ``ForceNew``
  in ``internal/service/sagemaker/endpoint.go``: a change replaces the endpoint, and a named
  endpoint is deleted before it is created again (an outage).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from infra.config.errors import MISSING, ConfigError, format_key
from infra.config.schema import PROJECT, StackConfig

#: The provider's endpoint waiter (``waitEndpointInService``: 60 minutes, not configurable).
PROVIDER_WAITER_SECONDS: Final = 3600
#: The deploy role's session (``infra/bootstrap/aws.py``: ``max_session_duration=3600``).
CI_SESSION_SECONDS: Final = 3600
#: What one rollout may take: 45 minutes, leaving a quarter of the hour for the rest of the job
#: (credentials, refresh, the resources created before and after the endpoint, verification).
ROLLOUT_BUDGET_SECONDS: Final = 2700

_DEPLOYMENT_KEY = format_key((f"{PROJECT}:aws", "endpoint", "deployment"))


def rollout_fits_waiter(config: StackConfig) -> Iterator[ConfigError]:
    """Provisioning + baking + termination wait (and the deployment timeout) fit the rollout budget.

    Past the provider's 60 minutes, ``pulumi up`` fails while SageMaker is still rolling out, and
    the state no longer says which config the endpoint runs; past the role's session, the job
    loses its credentials half-way.
    """
    aws = config.aws if config.cloud == "aws" else None
    settings = aws.endpoint.deployment if aws is not None else None
    if settings is None:
        return
    limits = (
        f"the budget is {ROLLOUT_BUDGET_SECONDS} s because the provider's endpoint waiter gives up after "
        f"{PROVIDER_WAITER_SECONDS} s and the CI role's session lasts {CI_SESSION_SECONDS} s"
    )
    total = settings.expected_seconds
    if total > ROLLOUT_BUDGET_SECONDS:
        yield ConfigError(
            _DEPLOYMENT_KEY,
            total,
            f"seconds is what one rollout takes: provisioningSeconds {settings.provisioning_seconds} + "
            f"{settings.traffic_steps} x waitIntervalSeconds {settings.wait_interval_seconds} + "
            f"terminationWaitSeconds {settings.termination_wait_seconds} = {total} s, over the "
            f"{ROLLOUT_BUDGET_SECONDS} s budget ({limits}); shorten waitIntervalSeconds or terminationWaitSeconds",
        )
    timeout = settings.maximum_execution_timeout_seconds
    if timeout is not None and timeout > ROLLOUT_BUDGET_SECONDS:
        yield ConfigError(
            format_key((f"{PROJECT}:aws", "endpoint", "deployment", "maximumExecutionTimeoutSeconds")),
            timeout,
            f"lets SageMaker roll out for longer than the {ROLLOUT_BUDGET_SECONDS} s budget ({limits}); "
            f"set it between the rollout's {total} s (provisioningSeconds + {settings.traffic_steps} x "
            f"waitIntervalSeconds + terminationWaitSeconds) and {ROLLOUT_BUDGET_SECONDS} s",
        )


def replacement_changes(before: StackConfig, after: StackConfig) -> Iterator[ConfigError]:
    """The changes from ``before`` to ``after`` (two versions of one stack) that replace a prod endpoint.

    A stack's config alone cannot show a change; a pull request can (the stack file on the default
    branch against the proposed one), which is when this runs. With the program's design, only three
    values reach the endpoint's ForceNew inputs: its name, whether a ``deployment`` section exists
    (the auto-rollback block comes with it, always naming ``<endpoint>-rollback``), and the region.
    """
    if not (before.is_prod or after.is_prod) or before.aws is None or after.aws is None:
        return
    old, new = before.aws.endpoint, after.aws.endpoint
    why = (
        "which replaces the prod endpoint (ForceNew in the AWS provider: it is deleted, then created again, "
        "an outage); deploy a new endpoint beside it and move clients first"
    )
    if old.name != new.name:
        yield ConfigError(
            format_key((f"{PROJECT}:aws", "endpoint", "name")), new.name, f"renames prod endpoint {old.name!r}, {why}"
        )
    if (old.deployment is None) != (new.deployment is None):
        change = "adds" if old.deployment is None else "removes"
        yield ConfigError(
            _DEPLOYMENT_KEY,
            MISSING,
            f"{change} the deployment section, and with it the endpoint's auto-rollback block, {why}",
        )
    if before.aws_region != after.aws_region:
        yield ConfigError(
            "aws:region", after.aws_region, f"moves prod endpoint {old.name!r} from {before.aws_region}, {why}"
        )


AWS_ROLLOUT_RULES = (rollout_fits_waiter,)
