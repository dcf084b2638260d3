"""The exceptions `model_package` raises for expected failures.

Every error message says what was wrong, what was expected and, where there is
one, what to do. The CLI prints ``str(error)`` as one line and exits with
``error.exit_code``; the inference server maps the same classes to HTTP codes.
"""

from __future__ import annotations


class ModelPackageError(Exception):
    """Base class of every expected failure in `model_package`."""

    exit_code: int = 1


class UsageError(ModelPackageError):
    """A caller passed an argument that cannot work (bad name, bad option)."""

    exit_code = 2


class ManifestError(ModelPackageError):
    """``manifest.json`` is missing, not JSON, or does not match the schema."""

    exit_code = 3


class UnsupportedSchemaVersionError(ManifestError):
    """The manifest was written by a newer, incompatible major schema version."""


class UnknownFormatError(UsageError):
    """A model format name or artifact type this library does not know."""


class MissingFileError(ModelPackageError):
    """A path the caller named does not exist."""

    exit_code = 4


class IntegrityError(ModelPackageError):
    """A package's files do not match its manifest (tampered or corrupted)."""

    exit_code = 5


class UnsafeArchiveError(IntegrityError):
    """An archive entry would escape the extraction root (tar-slip, links, devices)."""


class DigestMismatchError(IntegrityError):
    """Downloaded or packed bytes do not hash to the digest they were addressed by."""


class BehaviourMismatchError(ModelPackageError):
    """The packaged model's outputs differ from the bundled expected outputs."""

    exit_code = 6


class ExportError(ModelPackageError):
    """A framework failed to export or save a model."""

    exit_code = 7


class LoadError(ModelPackageError):
    """A framework failed to load a packaged model, or a required framework is missing."""

    exit_code = 7


class PredictionError(ModelPackageError):
    """A prediction failed; raise one of the two subclasses, which say whose fault it was."""

    exit_code = 8


class InvalidInputError(PredictionError):
    """The inputs do not fit the model's signature (names, rank, sizes, dtypes): the caller's fault.

    A server answers it with a 4xx and the message unchanged.
    """


class ModelExecutionError(PredictionError):
    """The framework failed to run the model on inputs that fit its signature: a failure on our side.

    A server answers it with a 5xx and logs it; the message may name shapes and framework details,
    so it goes to the log, not to the client.
    """


class StoreError(ModelPackageError):
    """Base class for failures talking to a package store."""

    exit_code = 9


class InvalidStoreURIError(StoreError, UsageError):
    """A store URI with an unsupported scheme or a malformed bucket/path."""

    exit_code = 2


class CredentialsError(StoreError):
    """No usable cloud credentials were found, or they were rejected."""


class StoreUnreachableError(StoreError):
    """The store's endpoint could not be reached."""


class PackageNotFoundError(StoreError):
    """No package exists at the requested store location."""


class ObjectConflictError(StoreError):
    """An object already exists at a content-addressed key with different content."""


class InputTooLargeError(InvalidInputError):
    """An input is valid but larger than the server decodes (an image's pixels): the caller's fault.

    A server answers it with 413 and the message unchanged.
    """
