"""The batch command's own failures, beside verify's (:mod:`infra.verify_common`).

Exit codes 2-9 keep verify's meanings (usage, not found, mismatch, credentials, cloud
unavailable...); a job that ran and did not deliver gets codes of its own, so a pipeline can
tell "the job failed" from "the job finished but records are missing".
"""

from __future__ import annotations

from infra.verify_common import VerifyError


class BatchJobFailedError(VerifyError):
    """The managed job ended Failed or Stopped (or the cloud cancelled it)."""

    exit_code = 10


class RecordsFailedError(VerifyError):
    """The job completed, but its output lacks records of the input (or reports failed ones)."""

    exit_code = 11


class JobInterruptedError(VerifyError):
    """Ctrl-C while following: the job keeps running in the cloud; the message says how to stop it."""

    exit_code = 130
