"""Read a stack's configuration from wherever it lives and validate it, once, before any resource.

Three sources, one validation path:

* :func:`load_stack_config` — a mapping of namespaced keys (``model-deploy:package``,
  ``aws:region``...) to already-parsed values; the other two end here;
* :func:`load_stack_file` — a committed ``Pulumi.<stack>.yaml`` (CI checks, the policy pack,
  tests), no Pulumi CLI needed;
* :func:`from_pulumi` — the running Pulumi program's config.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_origin

import pulumi
import pulumi.runtime
import yaml
from pydantic import BaseModel, ValidationError

from infra.config.errors import MISSING, ConfigError, format_key
from infra.config.problems import from_validation_error, unwrap_annotation
from infra.config.rules import check_rules
from infra.config.schema import PROJECT, StackConfig

#: Keys outside the project's namespace that the program reads (other provider settings are ignored).
_FOREIGN_KEYS = frozenset({"aws:region"})
_STACK_FILE_RE = re.compile(r"^Pulumi\.(?P<stack>[^/]+)\.ya?ml$")
_STACK_ALIAS = "pulumi:stack"


def load_stack_config(values: Mapping[str, Any], *, stack: str) -> StackConfig:
    """Validate a stack's config values; raises :class:`ConfigError` naming the first bad key.

    ``values`` maps namespaced Pulumi config keys to their values, objects already parsed
    (a key without a namespace belongs to the project, as in a stack file). Keys of other
    namespaces (provider settings such as ``aws:profile``) are ignored, except ``aws:region``.
    """
    if not stack:
        raise ConfigError("pulumi:stack", stack, "must name the stack (dev, staging, prod, ...)")
    relevant: dict[str, Any] = {}
    for raw_key, value in values.items():
        key = raw_key if ":" in raw_key else f"{PROJECT}:{raw_key}"
        if key.startswith(f"{PROJECT}:") or key in _FOREIGN_KEYS:
            relevant[key] = value
    secrets = [
        ConfigError(
            format_key(path),
            MISSING,
            "is a Pulumi secret ({secure: ...}), which cannot be read without the Pulumi CLI; none of "
            "model-deploy's settings is sensitive, so set it in plain text",
        )
        for key, value in relevant.items()
        for path in _secret_paths(value, (key,))
    ]
    if secrets:
        raise ConfigError.collect(secrets)
    try:
        config = StackConfig.model_validate({**relevant, _STACK_ALIAS: stack})
    except ValidationError as exc:
        raise from_validation_error(exc, StackConfig) from None
    check_rules(config)
    return config


def load_stack_file(path: Path) -> StackConfig:
    """Validate a ``Pulumi.<stack>.yaml`` file's ``config:`` map; the stack name comes from the file name."""
    path = Path(path)
    where = str(path)
    match = _STACK_FILE_RE.match(path.name)
    if match is None:
        raise ConfigError(where, MISSING, "is not a stack file: expected a name like Pulumi.<stack>.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ConfigError(where, MISSING, f"cannot be read: {reason}") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(where, MISSING, f"is not valid YAML: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(where, MISSING, "must hold a YAML mapping with a config: section")
    config = document.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: config", config, "must be a mapping of config keys to values")
    values = {str(key): value for key, value in config.items()}
    values.update(_top_level_scalars(text))
    return load_stack_config(values, stack=match.group("stack"))


def from_pulumi() -> StackConfig:
    """Validate the running Pulumi program's config (call once, at the top of the program)."""
    project = pulumi.Config(PROJECT)
    values: dict[str, Any] = {}
    for alias, is_object in _project_keys().items():
        name = alias.partition(":")[2]
        try:
            value = project.get_object(name) if is_object else project.get(name)
        except pulumi.ConfigTypeError as exc:
            raise ConfigError(alias, pulumi.runtime.get_config(alias), f"must be a JSON/YAML object: {exc}") from None
        if value is not None:
            values[alias] = value
    region = pulumi.Config("aws").get("region")
    if region is not None:
        values["aws:region"] = region
    # pulumi.Config only answers for keys it is asked about; list the rest so a misspelled key is reported
    # instead of silently ignored. These are the two places pulumi.runtime.get_config itself looks in.
    present = {*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.get_config_env()}
    known = _project_keys()
    for key in sorted(present):
        if key.startswith(f"{PROJECT}:") and key not in values and key not in known:
            values[key] = pulumi.runtime.get_config(key)
    return load_stack_config(values, stack=pulumi.get_stack())


def _top_level_scalars(text: str) -> dict[str, str | None]:
    """The ``config:`` entries whose value is a plain scalar, as the text written in the file.

    Pulumi keeps a top-level config value as the string in the file (only objects keep YAML
    types), so ``gitRevision: 1234567`` or ``version: 1.10`` must stay strings here too; PyYAML
    alone would turn them into the numbers 1234567 and 1.1.
    """
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    scalars: dict[str, str | None] = {}
    if not isinstance(root, yaml.MappingNode):
        return scalars
    for key_node, value_node in root.value:
        if key_node.value != "config" or not isinstance(value_node, yaml.MappingNode):
            continue
        for entry_key, entry_value in value_node.value:
            if isinstance(entry_value, yaml.ScalarNode):
                is_null = entry_value.tag == "tag:yaml.org,2002:null"
                scalars[str(entry_key.value)] = None if is_null else str(entry_value.value)
    return scalars


def _project_keys() -> dict[str, bool]:
    """``{namespaced key: holds an object}`` for every project key of the schema."""
    keys: dict[str, bool] = {}
    for name, info in StackConfig.model_fields.items():
        alias = info.alias or name
        if alias.startswith(f"{PROJECT}:"):
            inner = unwrap_annotation(info.annotation)
            is_model = isinstance(inner, type) and issubclass(inner, BaseModel)
            keys[alias] = is_model or get_origin(inner) is dict
    return keys


def _secret_paths(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    """Where ``value`` holds Pulumi's encrypted ``{secure: <ciphertext>}`` form."""
    if isinstance(value, Mapping):
        if set(value) == {"secure"} and isinstance(value["secure"], str):
            yield path
            return
        for key, item in value.items():
            yield from _secret_paths(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _secret_paths(item, (*path, index))
