"""preview.yml's matrix: which stacks a pull request's changed paths can affect."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.affected_stacks import affected, main, stacks_in

ROOT = Path(__file__).resolve().parents[2]
STACKS = ["aws-dev", "aws-prod", "aws-staging", "gcp-dev", "gcp-prod", "gcp-staging"]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (["Pulumi.aws-staging.yaml"], ["aws-staging"]),  # a promotion: one stack
        (["Pulumi.aws-prod.yaml", "Pulumi.gcp-prod.yaml"], ["aws-prod", "gcp-prod"]),
        (["infra/aws/endpoint.py"], ["aws-dev", "aws-prod", "aws-staging"]),
        (["infra/gcp/cloud_run.py", "README.md"], ["gcp-dev", "gcp-prod", "gcp-staging"]),
        (["infra/config/schema.py"], STACKS),
        (["model_package/publish.py"], STACKS),
        (["requirements/constraints.txt"], STACKS),
        (["Pulumi.yaml"], STACKS),
        ([".github/workflows/pulumi-stack.yml"], STACKS),
        (["infra/bootstrap/program.py"], []),  # a separate program, applied by hand
        (["README.md", "inference/app.py", "tests/infra/test_config.py", ""], []),
    ],
)
def test_changed_paths_select_the_stacks_they_can_affect(changed: list[str], expected: list[str]) -> None:
    assert affected(changed, STACKS) == expected


def test_the_committed_stacks_are_found_and_printed_as_a_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert stacks_in(ROOT) == STACKS
    assert main([str(ROOT)], io.StringIO("Pulumi.gcp-dev.yaml\ninfra/aws/iam.py\n")) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("matrix=")
    matrix = json.loads(line.removeprefix("matrix="))
    assert matrix == [
        {"stack": "aws-dev", "cloud": "aws"},
        {"stack": "aws-prod", "cloud": "aws"},
        {"stack": "aws-staging", "cloud": "aws"},
        {"stack": "gcp-dev", "cloud": "gcp"},
    ]


def test_a_stack_named_without_its_cloud_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.prod.yaml").write_text("config: {}\n")
    assert main([str(tmp_path)], io.StringIO("Pulumi.yaml\n")) == 2
    assert "stack 'prod' does not start with one of aws, gcp" in capsys.readouterr().err


def test_a_root_that_is_not_a_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "missing")], io.StringIO("Pulumi.aws-dev.yaml\n")) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_runs_with_the_standard_library_alone() -> None:
    # The workflow runs it with the runner's python3 before installing anything: -I -S, no site-packages.
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "infra" / "affected_stacks.py"), str(ROOT)],
        input="Pulumi.aws-dev.yaml\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == 'matrix=[{"stack":"aws-dev","cloud":"aws"}]'
