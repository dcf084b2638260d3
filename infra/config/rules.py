"""Cross-field rules: checks that relate several values of an already-typed stack config.

A rule is a function from :class:`StackConfig` to the problems it finds. The rules every
stack obeys are here; each cloud adds its own tuple (:mod:`infra.config.aws_rules`, and
:mod:`infra.config.gcp_rules`) to :data:`CLOUD_RULES`, so both clouds share one loader, one
error type and one way of reporting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from infra.config import aws_rules, gcp_rules
from infra.config.errors import MISSING, ConfigError, format_key
from infra.config.schema import PROJECT, STANDARD_TAG_KEYS, Cloud, StackConfig

#: A cross-field rule: yields a :class:`ConfigError` per problem (naming the key to fix).
Rule = Callable[[StackConfig], Iterable[ConfigError]]


def cloud_sections(config: StackConfig) -> Iterator[ConfigError]:
    """The chosen cloud's section (and region) is present; the other cloud's is not."""
    other = "gcp" if config.cloud == "aws" else "aws"
    if getattr(config, config.cloud) is None:
        yield ConfigError(
            f"{PROJECT}:{config.cloud}", MISSING, f"is required because {PROJECT}:cloud is {config.cloud}"
        )
    if getattr(config, other) is not None:
        yield ConfigError(
            f"{PROJECT}:{other}",
            MISSING,
            f"is set but {PROJECT}:cloud is {config.cloud}: remove it (one stack deploys to one cloud)",
        )
    if config.cloud == "aws" and config.aws_region is None:
        yield ConfigError("aws:region", MISSING, f"is required because {PROJECT}:cloud is aws")


def package_pin(config: StackConfig) -> Iterator[ConfigError]:
    """The package URI names the same package and digest as ``name`` and ``digest``."""
    package = config.package
    ref = package.ref
    key = format_key((f"{PROJECT}:package", "uri"))
    if ref.digest != package.digest:
        yield ConfigError(
            key,
            package.uri,
            f"points at digest {ref.digest}, but {PROJECT}:package.digest is {package.digest}: "
            "pin one package, copying both from what `model-package push` printed",
        )
    if ref.name != package.name:
        yield ConfigError(
            key,
            package.uri,
            f"points at package {ref.name!r}, but {PROJECT}:package.name is {package.name!r}",
        )


def tag_keys(config: StackConfig) -> Iterator[ConfigError]:
    """User tags do not override the tags the stack sets itself."""
    for tag in config.tags:
        if tag in STANDARD_TAG_KEYS:
            yield ConfigError(
                format_key((f"{PROJECT}:tags", tag)),
                config.tags[tag],
                f"sets tag {tag!r}, which the stack sets itself from the config "
                f"({', '.join(STANDARD_TAG_KEYS)}); remove it",
            )


COMMON_RULES: tuple[Rule, ...] = (cloud_sections, package_pin, tag_keys)

#: Each cloud's rules, run after :data:`COMMON_RULES` when the stack deploys to that cloud.
CLOUD_RULES: Mapping[Cloud, tuple[Rule, ...]] = {
    "aws": aws_rules.AWS_RULES,
    "gcp": gcp_rules.GCP_RULES,
}


def check_rules(config: StackConfig, rules: Iterable[Rule] | None = None) -> None:
    """Run ``rules`` (default: common + the stack's cloud); raise one :class:`ConfigError` carrying all problems."""
    selected = rules if rules is not None else (*COMMON_RULES, *CLOUD_RULES[config.cloud])
    problems = [problem for rule in selected for problem in rule(config)]
    if problems:
        raise ConfigError.collect(problems)
