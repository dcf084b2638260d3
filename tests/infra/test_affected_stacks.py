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


# --- deploy mode: what changed since the revision each stack last deployed ----------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, text in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


def _update(revision: str, result: str = "succeeded", kind: str = "update") -> dict[str, object]:
    """One entry of `pulumi stack history --json` as the pipeline's `pulumi up --config` records it."""
    return {
        "version": 3,
        "kind": kind,
        "startTime": "2026-12-01T10:00:00.000Z",
        "message": revision,
        "environment": {"exec.kind": "cli", "git.head": revision},
        "config": {"model-deploy:gitRevision": {"value": revision, "secret": False}},
        "result": result,
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q", "-b", "main")
    files = {f"Pulumi.{stack}.yaml": "config: {}\n" for stack in STACKS}
    files.update({"Pulumi.yaml": "name: model-deploy\n", "infra/aws/endpoint.py": "a = 1\n", "README.md": "x\n"})
    _commit(root, files, "initial")
    return root


def _decide(repo: Path, histories: dict[str, list[dict[str, object]]], head: str, cloud: str = "aws") -> dict[str, str]:
    hist = repo.parent / "histories"
    hist.mkdir(exist_ok=True)
    for old in hist.glob("*.json"):
        old.unlink()
    for stack, history in histories.items():
        (hist / f"{stack}.json").write_text(json.dumps(history))
    deploy_args = ["--cloud", cloud, "--head", head, "--history-dir", str(hist)]
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "infra" / "affected_stacks.py"), str(repo), *deploy_args],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(line.split("=", 1) for line in result.stdout.splitlines())


def test_a_change_whose_dev_deploy_was_replaced_still_reaches_staging(repo: Path) -> None:
    # A changes infra/aws (every AWS stack); its aws-dev job is replaced, pending, by B's, which changes
    # only Pulumi.aws-dev.yaml. Deciding from B's own diff would never take A's change to staging.
    base = _git(repo, "rev-parse", "HEAD")
    _commit(repo, {"infra/aws/endpoint.py": "a = 2\n"}, "A")
    b = _commit(repo, {"Pulumi.aws-dev.yaml": "config: {x: 1}\n"}, "B")
    deployed = {stack: [_update(base)] for stack in ("aws-dev", "aws-staging", "aws-prod")}
    assert _decide(repo, deployed, b) == {"dev": "true", "staging": "true", "prod": "true"}


def test_only_stacks_changed_since_their_deployed_revision_deploy(repo: Path) -> None:
    base = _git(repo, "rev-parse", "HEAD")
    a = _commit(repo, {"Pulumi.aws-staging.yaml": "config: {promoted: 1}\n"}, "promote to staging")
    history = {"aws-dev": [_update(base)], "aws-staging": [_update(base)], "aws-prod": [_update(base)]}
    assert _decide(repo, history, a) == {"dev": "false", "staging": "true", "prod": "false"}
    # Staging deployed it; a README change afterwards affects nothing.
    c = _commit(repo, {"README.md": "y\n"}, "docs")
    history["aws-staging"] = [_update(a), _update(base)]
    assert _decide(repo, history, c) == {"dev": "false", "staging": "false", "prod": "false"}
    # GCP stacks are decided on their own: a new (never deployed) stack deploys.
    assert _decide(repo, {"gcp-dev": [_update(base)]}, c, cloud="gcp") == {
        "dev": "false",
        "prod": "true",
        "staging": "true",
    }


def test_a_failed_or_unknown_last_update_deploys_again(repo: Path) -> None:
    base = _git(repo, "rev-parse", "HEAD")
    head = _commit(repo, {"README.md": "z\n"}, "docs")
    history = {
        "aws-dev": [_update(head, result="failed"), _update(base)],  # half-applied: unknown
        "aws-staging": [_update("f" * 40)],  # a revision this clone does not have
        "aws-prod": [_update(base, kind="refresh"), _update(head)],  # refreshes deploy nothing
    }
    assert _decide(repo, history, head) == {"dev": "true", "staging": "true", "prod": "false"}


def test_deploy_mode_options_go_together(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(ROOT), "--cloud", "aws"], io.StringIO("")) == 2
    assert "--cloud, --head and --history-dir go together" in capsys.readouterr().err


def test_a_stack_deployed_by_hand_counts_its_clean_commit_only() -> None:
    from infra.affected_stacks import deployed_revision

    commit = "a" * 40
    by_hand = {
        "kind": "update",
        "result": "succeeded",
        "config": {"model-deploy:gitRevision": {"value": "0000000", "secret": False}},  # the committed placeholder
        "environment": {"git.head": commit, "git.dirty": "false"},
    }
    assert deployed_revision([by_hand]) == (commit, "deployed")
    dirty = {**by_hand, "environment": {"git.head": commit, "git.dirty": "true"}}
    assert deployed_revision([dirty])[0] is None
    assert deployed_revision([{"kind": "update", "result": "succeeded", "config": {}, "environment": {}}])[0] is None
