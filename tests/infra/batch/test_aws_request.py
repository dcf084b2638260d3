"""The pure parts of a Batch Transform job: its name, where its output lands, Ctrl-C while following."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from infra.batch import aws_jobs
from infra.batch.aws_jobs import S3Location, job_name, output_key
from infra.batch.errors import JobInterruptedError
from infra.batch.records import content_type_of, count_lines

# TransformJobName: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
NAME_PATTERN = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
NOW = datetime(2026, 12, 6, 1, 2, 3, tzinfo=UTC)


def test_job_names_fit_sagemakers_pattern_even_for_the_longest_endpoint_names() -> None:
    name = job_name("e" * 62 + "-x", "model", "s3://b/in/", "s3://b/out/", NOW)
    assert NAME_PATTERN.match(name) and len(name) == 63
    assert name.endswith("-batch-20261206010203-" + name[-8:])


def test_job_names_are_deterministic_per_request_and_differ_across_inputs() -> None:
    first = job_name("digits-dev", "m", "s3://b/in/", "s3://b/out/", NOW)
    assert first == job_name("digits-dev", "m", "s3://b/in/", "s3://b/out/", NOW)
    assert first != job_name("digits-dev", "m", "s3://b/in2/", "s3://b/out/", NOW)
    assert first.startswith("digits-dev-batch-")


@pytest.mark.parametrize(
    ("source", "destination", "key", "expected"),
    [
        ("in/", "out/", "in/a.csv", "out/a.csv.out"),
        ("in/", "out", "in/day=1/a.csv", "out/day=1/a.csv.out"),
        ("in/part", "out/", "in/part-1.csv", "out/part-1.csv.out"),
        ("", "", "a.csv", "a.csv.out"),
    ],
)
def test_output_keys_keep_the_path_below_the_input_prefix(
    source: str, destination: str, key: str, expected: str
) -> None:
    assert output_key(S3Location("b", source), S3Location("b", destination), key) == expected


def test_line_counts_ignore_blank_lines_and_a_missing_final_newline() -> None:
    assert count_lines(b"a\n\nb\r\nc") == 3
    assert count_lines(b"") == 0


def test_mixed_extensions_are_refused() -> None:
    with pytest.raises(ValueError, match="mixes content types"):
        content_type_of(["in/a.csv", "in/b.jsonl"])


def test_ctrl_c_while_following_says_how_to_stop_the_job() -> None:
    class Aws:
        region = "us-east-1"

        def call(self, action: str, thunk: Any) -> Any:
            raise KeyboardInterrupt

    with pytest.raises(JobInterruptedError, match="stop-transform-job --transform-job-name job-1 --region us-east-1"):
        aws_jobs._follow(Aws(), "job-1", 1.0, log=print, sleep=lambda _: None, clock=lambda: 0.0, started=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(("instance_type", "volume_key"), [("ml.m5.large", True), ("ml.m5d.large", False)])
def test_the_volume_key_is_left_out_on_instance_storage_which_refuses_one(instance_type: str, volume_key: bool) -> None:
    request = aws_jobs.transform_request(
        name="job",
        model_name="model",
        source=S3Location("b", "in/"),
        destination=S3Location("b", "out/"),
        content_type="application/x-npy",
        instance_type=instance_type,
        instance_count=1,
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        tags={},
    )
    assert ("VolumeKmsKeyId" in request["TransformResources"]) is volume_key
    # A binary format is one record per object: no splitting, one request per object.
    assert (request["TransformInput"]["SplitType"], request["BatchStrategy"]) == ("None", "SingleRecord")
    assert request["TransformOutput"]["AssembleWith"] == "None"
