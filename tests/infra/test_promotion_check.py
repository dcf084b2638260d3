"""infra.promotion_check on real git repositories in tmp_path: the pull-request check that prod pins
exactly what staging pins on the default branch, same cloud only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.promotion_check import main
from tests.infra.test_promote import OLD_DIGEST, OTHER_DIGEST, aws_stack, gcp_stack

ROOT = Path(__file__).resolve().parents[2]
NEW_DIGEST = "cd" * 32
IMAGE_NEW = "sha256:" + "2e" * 32


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def aws(environment: str, digest: str, image: str = "sha256:" + "1f" * 32) -> str:
    return aws_stack(environment, f"model-deploy-{environment}-b", digest, repository="serve", image_digest=image)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: staging pins NEW_DIGEST (already promoted there), prod still OLD_DIGEST."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(
        root,
        {
            "Pulumi.aws-staging.yaml": aws("staging", NEW_DIGEST, IMAGE_NEW),
            "Pulumi.aws-prod.yaml": aws("prod", OLD_DIGEST),
            "Pulumi.gcp-staging.yaml": gcp_stack("staging", "g-stg", OTHER_DIGEST),
            "Pulumi.gcp-prod.yaml": gcp_stack("prod", "g-prod", OLD_DIGEST),
        },
        "main",
    )
    return root


def pull_request(repo: Path, files: dict[str, str]) -> tuple[str, str]:
    base = git(repo, "rev-parse", "main")
    git(repo, "checkout", "-q", "-b", "pr")
    return base, commit(repo, files, "pr")


def test_prod_pinning_what_staging_pins_on_main_passes(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", NEW_DIGEST, IMAGE_NEW)})
    assert main(["--root", str(repo), "--base", base, "--head", head]) == 0
    assert f"aws-prod: pins {NEW_DIGEST}, as aws-staging does" in capsys.readouterr().out


def test_prod_skipping_staging_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Staging and prod changed together: staging's pin in the same pull request does not count.
    base, head = pull_request(
        repo,
        {
            "Pulumi.aws-staging.yaml": aws("staging", OTHER_DIGEST),
            "Pulumi.aws-prod.yaml": aws("prod", OTHER_DIGEST),
        },
    )
    assert main(["--root", str(repo), "--base", base, "--head", head]) == 2
    err = capsys.readouterr().err
    assert "aws-prod must pin what aws-staging pins on the default branch" in err
    assert f"digest '{OTHER_DIGEST}' (staging: '{NEW_DIGEST}')" in err


def test_an_image_staging_did_not_run_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", NEW_DIGEST)})  # the old image
    assert main(["--root", str(repo), "--base", base, "--head", head]) == 2
    assert "image digest" in capsys.readouterr().err


def test_promotion_from_the_other_clouds_staging_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # gcp-staging pins OTHER_DIGEST; aws-prod may not take it: same cloud only.
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", OTHER_DIGEST)})
    assert main(["--root", str(repo), "--base", base, "--head", head]) == 2
    assert "aws-prod must pin what aws-staging pins" in capsys.readouterr().err


def test_what_staging_deployed_must_be_what_it_pins(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", NEW_DIGEST, IMAGE_NEW)})
    outputs = tmp_path / "aws-staging-outputs.json"
    outputs.write_text(json.dumps({"endpointName": "demo-staging", "packageDigest": OLD_DIGEST}))  # rolled back
    args = ["--root", str(repo), "--base", base, "--head", head, "--staging-outputs", f"aws={outputs}"]
    assert main(args) == 2
    assert f"its stack outputs show it deployed {OLD_DIGEST}" in capsys.readouterr().err
    outputs.write_text(json.dumps({"packageDigest": NEW_DIGEST}))
    assert main(args) == 0
    assert "and has deployed it" in capsys.readouterr().out


def test_changes_that_are_not_promotions_pass(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = (repo / "Pulumi.aws-prod.yaml").read_text().replace("# trailing comment", "# another comment")
    base, head = pull_request(
        repo, {"Pulumi.aws-prod.yaml": text, "Pulumi.aws-staging.yaml": aws("staging", OTHER_DIGEST)}
    )
    assert main(["--root", str(repo), "--base", base, "--head", head]) == 0
    assert "nothing to check" in capsys.readouterr().out


def test_an_unknown_base_is_our_failure_not_a_refusal(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(repo), "--base", "f" * 40]) == 1
    assert capsys.readouterr().err.startswith("promotion_check: error: git diff")


def test_runs_as_the_workflow_runs_it(repo: Path) -> None:
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", OTHER_DIGEST)})
    result = subprocess.run(
        [sys.executable, "-m", "infra.promotion_check", "--root", str(repo), "--base", base, "--head", head],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("promotion_check: refused: aws-prod must pin")


def _workflow_promotion_job() -> dict[str, object]:
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    return dict(workflow["jobs"]["promotion"])


def _run_workflow_step(repo: Path, tmp_path: Path, base: str, head: str) -> subprocess.CompletedProcess[str]:
    """preview.yml's own "Forward-only promotion" script, as a fork's pull request runs it (no outputs)."""
    job = _workflow_promotion_job()
    steps = [step for step in job["steps"] if "infra.promotion_check" in str(step.get("run", ""))]  # type: ignore[attr-defined]
    assert len(steps) == 1, "preview.yml's promotion job must run infra.promotion_check once"
    (step,) = steps
    assert "if" not in step, "the promotion check itself must run on every pull request"
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)  # the job's setup-python interpreter
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "RUNNER_TEMP": str(runner_temp),
        "SAME_REPOSITORY": "false",
        "BASE": base,
        "HEAD": head,
    }
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", str(step["run"])],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_pull_request_workflow_refuses_prod_skipping_staging(repo: Path, tmp_path: Path) -> None:
    job = _workflow_promotion_job()
    assert "if" not in job, "forks' pull requests must get the promotion check too"
    assert not job.get("continue-on-error"), "a refused promotion must fail the check"
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", OTHER_DIGEST)})
    done = _run_workflow_step(repo, tmp_path, base, head)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "aws-prod must pin what aws-staging pins on the default branch" in done.stderr


def test_the_pull_request_workflow_passes_a_real_promotion(repo: Path, tmp_path: Path) -> None:
    base, head = pull_request(repo, {"Pulumi.aws-prod.yaml": aws("prod", NEW_DIGEST, IMAGE_NEW)})
    done = _run_workflow_step(repo, tmp_path, base, head)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"aws-prod: pins {NEW_DIGEST}, as aws-staging does" in done.stdout
