"""What every part of the stack config shares: the base model and the generic field checks.

Each check raises :class:`~pydantic_core.PydanticCustomError` of kind ``model_deploy`` so the
loader reports the message verbatim (:mod:`infra.config.problems`), with the key path pydantic
tracked and the offending input.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from infra.config.aws_limits import aws_limits
from model_package.errors import InvalidStoreURIError
from model_package.stores import parse_store_uri


def fail(message: str) -> NoReturn:
    # The message goes through the context: a literal template would treat "{0,62}" in a pattern as a field.
    raise PydanticCustomError("model_deploy", "{message}", {"message": message})


def _camel(name: str) -> str:
    # pydantic's to_camel would turn error_rate_5xx_percent into errorRate5XxPercent.
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class ConfigModel(BaseModel):
    """Frozen, camelCase keys as in the YAML, unknown keys refused (a misspelling is an error)."""

    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=_camel)


def at_least(minimum: int, what: str) -> AfterValidator:
    def check(value: int) -> int:
        if value < minimum:
            fail(f"is too small: {what} must be at least {minimum}")
        return value

    return AfterValidator(check)


def positive(what: str) -> AfterValidator:
    def check(value: float) -> float:
        if value <= 0:
            fail(f"must be greater than 0 ({what})")
        return value

    return AfterValidator(check)


def between(minimum: int, maximum: int, what: str) -> AfterValidator:
    def check(value: int) -> int:
        if not minimum <= value <= maximum:
            fail(f"is out of range: {what} must be {minimum}-{maximum}")
        return value

    return AfterValidator(check)


def _check_tag_key(value: str) -> str:
    problem = aws_limits().tag_key.problem(value)
    if problem:
        fail(f"is not a valid tag key: it {problem}")
    if value.lower().startswith("aws:"):
        fail("is not a valid tag key: the 'aws:' prefix is reserved for AWS")
    return value


def _check_tag_value(value: str) -> str:
    problem = aws_limits().tag_value.problem(value)
    if problem:
        fail(f"is not a valid tag value: it {problem}")
    return value


#: Tag keys and values: AWS's rules (botocore), the stricter of the two clouds' (labels are derived).
TagKey = Annotated[str, AfterValidator(_check_tag_key)]
TagValue = Annotated[str, AfterValidator(_check_tag_value)]


def bucket_name_problem(scheme: str, name: str) -> str | None:
    """Why ``name`` is not a bucket name of ``scheme`` (``s3``/``gs``), per the stores' own rule; ``None`` if it is."""
    try:
        parse_store_uri(f"{scheme}://{name}")
    except InvalidStoreURIError as exc:
        # model_package words the rule ("... bucket name: <why>; supported: ..."); keep only the why.
        return str(exc).partition("bucket name: ")[2].partition("; supported")[0] or str(exc)
    return None
