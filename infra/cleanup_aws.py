"""``model-deploy-cleanup``: delete the models and endpoint configs a verified rollout no longer needs.

The stack keeps every superseded SageMaker model and endpoint config (``retain_on_delete``, see
:mod:`infra.aws.endpoint`): after an auto-rollback the endpoint runs the *old* config while the
provider reports success, and deleting it would leave the endpoint unable to scale out or roll
back again. This command deletes them only once that cannot be the case::

    pulumi stack output --json > outputs.json
    model-deploy-verify --stack-outputs outputs.json        # the rollout really landed
    model-deploy-cleanup --stack-outputs outputs.json [--dry-run]

It refuses (deleting nothing) unless the endpoint is ``InService`` on the config the stack just
declared. It then deletes, of the endpoint configs and models named like the stack's own
(``<endpoint>-config-<7 hex>``, ``<endpoint>-model-<7 hex>``: Pulumi's auto-names) **and** tagged
``managed-by: model-deploy`` with the endpoint's ``stack`` tag, those created before the current
config and not used by it (nor by a newer config, which a concurrent deploy may be rolling out).

After ``pulumi destroy`` (the stack outputs are gone), name what to clean::

    model-deploy-cleanup --after-destroy --endpoint-name digits-dev --stack aws-dev --region eu-west-1

One summary line and exit 0, or one ``error:`` line and the exit codes of ``model-deploy-verify``
(3 the endpoint does not exist, 4 not ``InService``, 5 it runs another config than the declared
one, 7 credentials or permissions, 8 AWS failed otherwise, 2 usage).

The deploy role needs, besides what ``pulumi up`` uses: ``sagemaker:DescribeEndpoint``,
``DescribeEndpointConfig``, ``ListEndpointConfigs``, ``ListModels``, ``ListTags``,
``DeleteEndpointConfig`` and ``DeleteModel``.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from infra.aws.naming import CONFIG_KIND, MODEL_KIND, child_name
from infra.config import PROJECT
from infra.verify_aws import AwsClients, check_status
from infra.verify_common import (
    DeploymentMismatchError,
    EndpointNotFoundError,
    UsageError,
    load_outputs,
    output_value,
    run_command,
)

PROG: Final = "model-deploy-cleanup"
#: Pulumi's auto-names: the logical name, a dash and 7 random hex digits.
_AUTONAME_SUFFIX: Final = r"-[0-9a-f]{7}"


@dataclass(frozen=True)
class Owned:
    """A SageMaker model or endpoint config that belongs to the stack."""

    name: str
    created: datetime


@dataclass
class Plan:
    """What the clean-up keeps and deletes."""

    endpoint_name: str
    current_config: str | None
    kept_models: set[str] = field(default_factory=set)
    configs: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        """The one line the command prints."""
        verb = "would delete" if self.dry_run else "deleted"
        deleted = f"{verb} {len(self.configs)} endpoint configs and {len(self.models)} models"
        if self.configs or self.models:
            deleted += f" ({', '.join([*self.configs, *self.models])})"
        if self.current_config is None:
            return f"OK: endpoint {self.endpoint_name} is gone; {deleted}"
        kept = ", ".join(sorted(self.kept_models)) or "none"
        return (
            f"OK: endpoint {self.endpoint_name} is InService on config {self.current_config}; {deleted}; "
            f"kept {self.current_config} and its models ({kept})"
        )


@dataclass(frozen=True)
class Listing:
    """How SageMaker lists one kind of resource."""

    operation: str
    items: str
    name_key: str
    arn_key: str


CONFIGS: Final = Listing("list_endpoint_configs", "EndpointConfigs", "EndpointConfigName", "EndpointConfigArn")
MODELS: Final = Listing("list_models", "Models", "ModelName", "ModelArn")


def _tags_of(aws: AwsClients, what: str, arn: str) -> dict[str, str]:
    found = aws.call(f"list the tags of {what}", functools.partial(aws.sagemaker.list_tags, ResourceArn=arn))
    return {str(tag["Key"]): str(tag["Value"]) for tag in found.get("Tags", [])}


def _owned(aws: AwsClients, listing: Listing, prefix: str, tags: Mapping[str, str]) -> Iterator[Owned]:
    """Resources ``listing`` finds whose name is ``<prefix>-<7 hex>`` and that carry ``tags``."""
    pattern = re.compile(re.escape(prefix) + _AUTONAME_SUFFIX + "$")
    paginator = aws.sagemaker.get_paginator(listing.operation)
    pages = aws.call(f"list SageMaker {listing.items}", lambda: list(paginator.paginate(NameContains=f"{prefix}-")))
    for page in pages:
        for item in page.get(listing.items, []):
            name = str(item[listing.name_key])
            # NameContains is a substring match: the pattern keeps Pulumi's auto-names of this endpoint only.
            if not pattern.match(name):
                continue
            have = _tags_of(aws, name, str(item[listing.arn_key]))
            if all(have.get(key) == value for key, value in tags.items()):
                yield Owned(name, item["CreationTime"])


def _describe_config(aws: AwsClients, name: str) -> Mapping[str, Any]:
    described: Mapping[str, Any] = aws.call(
        f"describe endpoint config {name!r}",
        functools.partial(aws.sagemaker.describe_endpoint_config, EndpointConfigName=name),
    )
    return described


def _models_of(config: Mapping[str, Any]) -> set[str]:
    variants = [*config.get("ProductionVariants", []), *config.get("ShadowProductionVariants", [])]
    return {str(variant["ModelName"]) for variant in variants if variant.get("ModelName")}


def plan_cleanup(
    aws: AwsClients, endpoint_name: str, expected_config: str | None, *, stack: str | None, after_destroy: bool
) -> Plan:
    """Decide what to delete; raise a :class:`VerifyError` (deleting nothing) when it is not safe."""
    description: Mapping[str, Any] | None
    try:
        description = aws.call(
            f"describe endpoint {endpoint_name!r}",
            lambda: aws.sagemaker.describe_endpoint(EndpointName=endpoint_name),
            not_found=f"endpoint {endpoint_name!r} does not exist in {aws.region}",
        )
    except EndpointNotFoundError as exc:
        if not after_destroy:
            raise EndpointNotFoundError(
                f"{exc}; nothing was deleted (after `pulumi destroy`, pass --after-destroy with --stack)"
            ) from None
        description = None
    if description is not None and after_destroy:
        raise UsageError(f"--after-destroy, but endpoint {endpoint_name!r} still exists; nothing was deleted")

    plan = Plan(endpoint_name, current_config=None)
    newer_than: datetime | None = None
    if description is not None:
        check_status(description)
        actual = str(description.get("EndpointConfigName"))
        if actual != expected_config:
            raise DeploymentMismatchError(
                f"endpoint {endpoint_name!r} runs endpoint config {actual!r}, not the declared {expected_config!r} "
                "(SageMaker rolled the rollout back, or it has not been deployed): the endpoint still needs that "
                "config and its models, so nothing was deleted; fix the cause, `pulumi up`, verify, then clean up"
            )
        stack = stack or _tags_of(aws, f"endpoint {endpoint_name!r}", str(description["EndpointArn"])).get("stack")
        current = _describe_config(aws, actual)
        plan.current_config = actual
        plan.kept_models = _models_of(current)
        newer_than = current["CreationTime"]
    if not stack:
        raise UsageError(
            f"cannot tell which stack owns endpoint {endpoint_name!r} (no 'stack' tag): pass --stack; "
            "nothing was deleted"
        )
    owner = {"managed-by": PROJECT, "stack": stack}

    keep_configs = {plan.current_config} if plan.current_config else set()
    for config in list(_owned(aws, CONFIGS, child_name(endpoint_name, CONFIG_KIND), owner)):
        if config.name in keep_configs:
            continue
        if newer_than is not None and config.created >= newer_than:
            # Created with or after the running config: a concurrent deploy may be rolling it out.
            plan.kept_models |= _models_of(_describe_config(aws, config.name))
            continue
        plan.configs.append(config.name)
    models = _owned(aws, MODELS, child_name(endpoint_name, MODEL_KIND), owner)
    plan.models = [
        model.name
        for model in models
        if model.name not in plan.kept_models and (newer_than is None or model.created < newer_than)
    ]
    return plan


def apply(aws: AwsClients, plan: Plan) -> None:
    """Delete the plan's configs, then its models (a config names its models, not the other way round)."""
    for name in plan.configs:
        aws.call(
            f"delete endpoint config {name!r}",
            functools.partial(aws.sagemaker.delete_endpoint_config, EndpointConfigName=name),
        )
    for name in plan.models:
        aws.call(f"delete model {name!r}", functools.partial(aws.sagemaker.delete_model, ModelName=name))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Delete the SageMaker models and endpoint configs the stack kept from earlier rollouts, once the "
        "endpoint is verified on the declared config.",
    )
    parser.add_argument(
        "--stack-outputs", metavar="FILE", help="`pulumi stack output --json` written to FILE ('-' for stdin)"
    )
    parser.add_argument("--endpoint-name", help="the endpoint (overrides endpointName)")
    parser.add_argument("--expected-config", help="the config it must run (overrides endpointConfigName)")
    parser.add_argument("--region", help="AWS region (overrides region; default: boto3's)")
    parser.add_argument("--stack", help="the stack's name, as in its 'stack' tag (default: the endpoint's tag)")
    parser.add_argument(
        "--after-destroy",
        action="store_true",
        help="the endpoint was destroyed: delete every model and config the stack kept for it",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be deleted, delete nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``model-deploy-cleanup``."""
    args = _parser().parse_args(argv)

    def run() -> Plan:
        outputs = load_outputs(args.stack_outputs) if args.stack_outputs else {}
        endpoint_name = args.endpoint_name or output_value(outputs, ("endpointName",))
        expected = args.expected_config or output_value(outputs, ("endpointConfigName",))
        region = args.region or output_value(outputs, ("region", "awsRegion"))
        if not endpoint_name:
            raise UsageError("nothing says which endpoint to clean up: missing endpointName (or --endpoint-name)")
        if not expected and not args.after_destroy:
            raise UsageError(
                "nothing says which config the endpoint must run: missing endpointConfigName (or --expected-config)"
            )
        aws = AwsClients(region)
        plan = plan_cleanup(aws, endpoint_name, expected, stack=args.stack, after_destroy=args.after_destroy)
        plan.dry_run = args.dry_run
        if not args.dry_run:
            apply(aws, plan)
        return plan

    return run_command(PROG, run)


if __name__ == "__main__":
    sys.exit(main())
