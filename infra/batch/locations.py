"""Where a stack lets its batch jobs read and write: the ``batchInputUri`` / ``batchOutputUri`` stack outputs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from infra.verify_common import UsageError, output_value


def require_within(outputs: Mapping[str, Any], flag: str, uri: str, key: str) -> None:
    """Refuse ``uri`` outside the prefix the stack output ``key`` names (no outputs: nothing to compare).

    The job's identity may use only that prefix; a job elsewhere would fail on an access error
    after minutes of provisioning, so the command refuses it up front.
    """
    allowed = output_value(outputs, (key,))
    if allowed is None:
        return
    if not (uri.rstrip("/") + "/").startswith(allowed.rstrip("/") + "/"):
        verb = "read" if flag == "--input" else "write"
        raise UsageError(
            f"{flag} {uri} is outside {allowed}, the only place the stack's job identity may {verb} "
            f"batch data ({key} of the stack outputs)"
        )


@dataclass(frozen=True)
class ObjectPrefix:
    """A bucket and a key prefix (may be empty) in one cloud's object store."""

    SCHEME: ClassVar[str]
    STORE: ClassVar[str]
    """Who reads and writes it, for the refusal of another scheme."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"{self.SCHEME}://{self.bucket}/{self.key}"

    @classmethod
    def parse(cls, uri: str, flag: str) -> Self:
        """``<scheme>://bucket/prefix`` -> bucket and prefix; :class:`UsageError` naming ``flag`` otherwise."""
        scheme = f"{cls.SCHEME}://"
        if not uri.startswith(scheme):
            raise UsageError(f"{flag} {uri!r} is not of the form {scheme}<bucket>/<prefix>/; {cls.STORE}")
        bucket, _, key = uri[len(scheme) :].partition("/")
        if not bucket:
            raise UsageError(f"{flag} {uri!r} names no bucket: expected {scheme}<bucket>/<prefix>/")
        return cls(bucket, key)

    @classmethod
    def input_and_output(cls, input_uri: str, output_uri: str) -> tuple[Self, Self]:
        """``--input`` and ``--output`` parsed; refused when the output lies under the input."""
        source, destination = cls.parse(input_uri, "--input"), cls.parse(output_uri, "--output")
        if destination.bucket == source.bucket and destination.key.startswith(source.key):
            raise UsageError(
                f"--output {destination.uri} lies under --input {source.uri}: the job would read its own output"
            )
        return source, destination


class S3Location(ObjectPrefix):
    SCHEME = "s3"
    STORE = "an AWS stack's jobs read and write S3"


class GcsLocation(ObjectPrefix):
    SCHEME = "gs"
    STORE = "a GCP stack's jobs read and write Cloud Storage"
