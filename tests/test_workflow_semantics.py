"""Which deploy and drift jobs run, wait for approval, stay pending or are cancelled, given a sequence
of merges and approvals: simulated from the workflow files (tests/workflow_sim.py), not a copy of them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.workflow_sim import Run, Simulator, condition, evaluate, run_steps

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "acme/model-deploy"
BOTH_CLOUDS = {"PULUMI_BACKEND_URL_AWS": "s3://acme-state", "PULUMI_BACKEND_URL_GCP": "gs://acme-state"}
EVERYTHING = ("dev", "staging", "prod")


def simulator(root: Path = ROOT, variables: dict[str, str] | None = None) -> Simulator:
    # staging and prod have required reviewers (README: repository settings -> Environments).
    return Simulator(
        root,
        variables=BOTH_CLOUDS if variables is None else variables,
        protected={"staging", "prod"},
        repository=REPOSITORY,
    )


def merge(
    sim: Simulator, sha: str, *, conclusion: str = "success", event: str = "push", fork: bool = False
) -> Run | None:
    """A push to main: ci runs on it, and deploy.yml starts when ci completes (or on the push itself)."""
    ci = sim.load("ci.yml")
    assert sim.trigger("ci.yml", "push", {"after": sha}) is not None, "ci must run on pushes to main"
    payload = {
        "action": "completed",
        "workflow_run": {
            "name": ci["name"],
            "head_branch": "main",
            "head_sha": sha,
            "conclusion": conclusion,
            "event": event,
            "head_repository": {"full_name": "someone/fork" if fork else REPOSITORY},
        },
    }
    return sim.trigger("deploy.yml", "workflow_run", payload) or sim.trigger("deploy.yml", "push", {"after": sha})


def plan(sim: Simulator, run: Run, aws: tuple[str, ...] = EVERYTHING, gcp: tuple[str, ...] = EVERYTHING) -> None:
    """The plan jobs report which environments the commit affects (affected_stacks.py's output)."""
    for cloud, environments in (("aws", aws), ("gcp", gcp)):
        if sim.states(run).get(f"plan-{cloud}") == "running":
            sim.finish(run, f"plan-{cloud}", outputs={env: str(env in environments).lower() for env in EVERYTHING})


def test_deploys_wait_for_ci_on_the_same_commit() -> None:
    sim = simulator()
    assert sim.trigger("deploy.yml", "push", {"after": "a1"}) is None, "a push alone must not deploy"
    failed = merge(sim, "a1", conclusion="failure")
    assert failed is not None and set(sim.states(failed).values()) == {"skipped"}
    run = merge(sim, "a2")
    assert run is not None
    assert sim.states(run)["plan-aws"] == "running"
    # The deploy checks out and records exactly the commit ci tested.
    plan(sim, run)
    assert sim.job(run, "aws-dev").context["inputs"]["revision"] == "a2"


def test_a_merge_whose_ci_run_is_superseded_is_deployed_with_the_next() -> None:
    # ci.yml cancels its running run on main when a newer push arrives (ci-<ref>, cancel-in-progress):
    # the older commit's deploy never starts; the newer one plans from each stack's deployed commit.
    sim = simulator()
    first = sim.trigger("ci.yml", "push", {"after": "a1"})
    second = sim.trigger("ci.yml", "push", {"after": "b2"})
    assert first is not None and second is not None
    assert first.state == "cancelled" and sim.states(second)["test"] == "running"
    skipped = merge(sim, "a1", conclusion="cancelled")
    assert skipped is not None and set(sim.states(skipped).values()) == {"skipped"}


def test_a_fork_pull_request_on_a_branch_named_main_deploys_nothing() -> None:
    sim = simulator()
    for run in (merge(sim, "f1", fork=True), merge(sim, "f2", event="pull_request")):
        assert run is not None and set(sim.states(run).values()) == {"skipped"}


def test_an_unapproved_prod_gate_does_not_block_later_dev_deploys() -> None:
    sim = simulator()
    first = merge(sim, "a1")
    assert first is not None
    plan(sim, first)
    sim.finish(first, "aws-dev")
    assert sim.states(first)["aws-staging"] == "waiting"
    sim.approve(first, "aws-staging")
    sim.finish(first, "aws-staging")
    assert sim.states(first)["aws-prod"] == "waiting"  # nobody approves prod yet

    second = merge(sim, "b2")
    assert second is not None
    plan(sim, second)
    assert sim.states(second)["aws-dev"] == "running"  # not pending behind the prod gate
    sim.finish(second, "aws-dev")
    sim.approve(second, "aws-staging")
    sim.finish(second, "aws-staging")
    assert sim.states(second)["aws-prod"] == "pending"  # behind the first run's prod job, in its group

    third = merge(sim, "c3")
    assert third is not None
    plan(sim, third)
    sim.finish(third, "aws-dev")
    sim.approve(third, "aws-staging")
    sim.finish(third, "aws-staging")
    # At most one pending job per group: the newer prod deploy replaces the older pending one.
    assert sim.states(second)["aws-prod"] == "cancelled"
    assert sim.states(third)["aws-prod"] == "pending"
    # Approving the first prod deploy lets it run; when it ends, the newest one asks for approval.
    sim.approve(first, "aws-prod")
    sim.finish(first, "aws-prod")
    assert sim.states(third)["aws-prod"] == "waiting"


def test_the_clouds_proceed_independently() -> None:
    sim = simulator()
    run = merge(sim, "a1")
    assert run is not None
    plan(sim, run)
    sim.finish(run, "gcp-dev", result="failure")
    sim.finish(run, "aws-dev")
    states = sim.states(run)
    assert states["aws-staging"] == "waiting"
    assert states["gcp-staging"] == "skipped"
    assert states["gcp-prod"] == "skipped"  # never after a failure, even with staging skipped


def test_an_aws_only_team_reaches_staging() -> None:
    sim = simulator(variables={"PULUMI_BACKEND_URL_AWS": "s3://acme-state"})
    run = merge(sim, "a1")
    assert run is not None
    assert sim.states(run)["plan-gcp"] == "skipped"
    plan(sim, run)
    sim.finish(run, "aws-dev")
    states = sim.states(run)
    assert states["aws-staging"] == "waiting"
    assert {states[f"gcp-{env}"] for env in EVERYTHING} == {"skipped"}


def test_only_affected_stacks_deploy_and_ask_for_approval() -> None:
    sim = simulator()
    promotion = merge(sim, "p1")  # Pulumi.aws-prod.yaml only
    assert promotion is not None
    plan(sim, promotion, aws=("prod",), gcp=())
    states = sim.states(promotion)
    assert states["aws-dev"] == "skipped" and states["aws-staging"] == "skipped"
    assert states["aws-prod"] == "waiting"  # the only approval asked for
    assert {states[f"gcp-{env}"] for env in EVERYTHING} == {"skipped"}


def test_a_failed_dev_deploy_stops_staging_and_prod() -> None:
    sim = simulator()
    run = merge(sim, "a1")
    assert run is not None
    plan(sim, run, aws=("dev", "prod"))
    sim.finish(run, "aws-dev", result="failure")
    states = sim.states(run)
    assert states["aws-staging"] == "skipped" and states["aws-prod"] == "skipped"


def test_a_rejected_staging_deploy_stops_prod_and_frees_the_group() -> None:
    sim = simulator()
    run = merge(sim, "a1")
    assert run is not None
    plan(sim, run, gcp=())
    sim.finish(run, "aws-dev")
    sim.reject(run, "aws-staging")
    assert sim.states(run)["aws-prod"] == "skipped"
    later = merge(sim, "b2")  # its plan still sees staging behind (affected_stacks tests)
    assert later is not None
    plan(sim, later, aws=("staging", "prod"), gcp=())
    assert sim.states(later)["aws-staging"] == "waiting"


def drift(sim: Simulator, stacks: list[str]) -> Run:
    run = sim.trigger("drift.yml", "schedule", {})
    assert run is not None
    matrix = [{"stack": stack, "cloud": stack.split("-")[0]} for stack in stacks]
    sim.finish(run, "quiet", outputs={"matrix": __import__("json").dumps(matrix)})
    return run


def test_drift_checks_share_the_stacks_concurrency_group() -> None:
    sim = simulator()
    check = drift(sim, ["aws-dev", "gcp-dev"])
    assert sim.states(check)["drift (aws-dev, aws)"] == "running"
    run = merge(sim, "a1")
    assert run is not None
    plan(sim, run)
    # aws-dev's deploy waits for the drift check of aws-dev; aws-staging is unaffected by it.
    assert sim.states(run)["aws-dev"] == "pending"
    sim.finish(check, "drift (aws-dev, aws)")
    assert sim.states(run)["aws-dev"] == "running"


def test_drift_leaves_out_stacks_with_a_deploy_in_flight() -> None:
    # Queued behind a prod job waiting for approval, a drift check of aws-prod would replace (cancel)
    # a pending prod deploy: the `quiet` job leaves such stacks out, and drift.yml runs only the rest.
    sim = simulator()
    run = merge(sim, "a1")
    assert run is not None
    plan(sim, run, gcp=())
    sim.finish(run, "aws-dev")
    sim.approve(run, "aws-staging")
    sim.finish(run, "aws-staging")
    later = merge(sim, "b2")
    assert later is not None
    plan(sim, later, gcp=())
    sim.finish(later, "aws-dev")
    sim.approve(later, "aws-staging")
    sim.finish(later, "aws-staging")
    assert sim.states(later)["aws-prod"] == "pending"
    check = drift(sim, ["aws-dev", "aws-staging"])  # what `quiet` outputs while aws-prod deploys are unfinished
    assert sim.states(later)["aws-prod"] == "pending"  # not replaced
    assert sim.states(check)["drift (aws-dev, aws)"] == "running"
    # The hazard the quiet job avoids, for the record:
    unguarded = drift(sim, ["aws-prod"])
    assert sim.states(later)["aws-prod"] == "cancelled"
    assert sim.states(unguarded)["drift (aws-prod, aws)"] == "pending"


def test_previews_never_take_a_stacks_group() -> None:
    sim = simulator()
    run = merge(sim, "a1")
    assert run is not None
    plan(sim, run)
    pr = sim.trigger(
        "preview.yml", "pull_request", {"pull_request": {"number": 7, "head": {"repo": {"full_name": REPOSITORY}}}}
    )
    assert pr is not None
    sim.finish(pr, "stacks", outputs={"matrix": '[{"stack":"aws-dev","cloud":"aws"}]'})
    assert sim.states(pr)["preview (aws-dev, aws)"] == "running"
    assert sim.states(run)["aws-dev"] == "running"


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("'a' == 'A'", True),
        ("!contains(needs.*.result, 'failure')", False),
        ("needs.plan.outputs.dev == 'true' && 'x' || 'y'", "x"),
        ("format('stack-{0}', inputs.stack)", "stack-aws-dev"),
        ("inputs.operation == 'preview' && '0' || '1'", "1"),
    ],
)
def test_the_simulators_expressions(expression: str, expected: object) -> None:
    context = {
        "needs": {"plan": {"result": "success", "outputs": {"dev": "true"}}, "dev": {"result": "failure"}},
        "inputs": {"stack": "aws-dev", "operation": "up"},
    }
    assert evaluate(expression, context) == expected
    status = {"success": False, "failure": True, "cancelled": False, "always": True}
    assert condition("needs.plan.outputs.dev == 'true'", context, status) is False  # implicit success()


def _steps() -> list[dict[str, Any]]:
    job = simulator().load("pulumi-stack.yml")["jobs"]["pulumi"]
    return list(job["steps"])


@pytest.mark.parametrize("outcome", ["success", "failure"])
def test_a_preview_is_commented_on_the_pull_request_whether_it_passes_or_fails(outcome: str) -> None:
    # pulumi/actions comments only after a successful command; a policy violation fails the preview.
    (comment,) = [step for step in _steps() if "gh pr comment" in str(step.get("run", ""))]
    context = {
        "inputs": {"operation": "preview"},
        "steps": {"preview": {"outcome": outcome}},
        "github": {"event": {"pull_request": {"number": 7}}},
    }
    status = {"success": outcome == "success", "failure": outcome == "failure", "cancelled": False, "always": True}
    assert condition(comment["if"], context, status)


def test_every_pulumi_command_that_runs_the_program_records_the_pipelines_revision() -> None:
    commands = [
        (str(step.get("name")), line)
        for step in _steps()
        # the check after `up` reads the revision `up --config` saved into the stack file
        if step.get("name") != "pulumi preview --expect-no-changes"
        for line in str(step.get("run", "")).replace("\\\n", " ").splitlines()
        if re.match(r"\s*(if ! )?pulumi (up|preview)\b", line)
    ]
    assert {name for name, _ in commands} >= {"pulumi preview", "pulumi up"}
    for name, line in commands:
        assert '--config "model-deploy:gitRevision=$REVISION"' in line, f"{name}: {line}"


# --- the steps of a deploy (pulumi-stack.yml, operation up), from the file's own `if`s


def _deploy(cloud: str, fail: set[str] | None = None, operation: str = "up") -> dict[str, str]:
    """``{step name: outcome}`` of one pulumi-stack.yml job when the steps in ``fail`` fail."""
    context = {
        "inputs": {"stack": f"{cloud}-prod", "cloud": cloud, "operation": operation, "credentials": "PROD"},
        "github": {"sha": "a1", "event": {}},
        "vars": {},
    }
    return dict(run_steps(_steps(), context, fail))


LIVE = "Live instance counts (model-deploy-live-capacity)"
UP = "pulumi up"
VERIFY = {
    "aws": "Verify the deployment (model-deploy-verify)",
    "gcp": "Verify the deployment (model-deploy-verify-gcp)",
}
SETTLED = "pulumi preview --expect-no-changes"
CLEANUP = "Delete superseded models and configs (model-deploy-cleanup)"


def _ran(outcomes: dict[str, str]) -> list[str]:
    return [name for name, outcome in outcomes.items() if outcome != "skipped"]


def test_an_aws_deploy_reads_live_capacity_then_ups_verifies_checks_and_cleans_up_in_that_order() -> None:
    ran = _ran(_deploy("aws"))
    order = [LIVE, UP, VERIFY["aws"], SETTLED, CLEANUP]
    assert [name for name in ran if name in order] == order
    assert all(outcome == "success" for outcome in _deploy("aws").values() if outcome != "skipped")


def test_the_live_counts_reach_pulumi_up_through_the_job_environment() -> None:
    # $GITHUB_ENV lines become environment variables of the job's later steps; the program reads the
    # variable infra/aws/capacity.py names, and the command prints exactly that NAME=value line.
    from infra.aws.capacity import LIVE_COUNTS_VARIABLE
    from infra.capacity_aws import LiveCounts

    (live,) = [step for step in _steps() if step.get("name") == LIVE]
    assert re.search(
        r'model-deploy-live-capacity --stack-file "Pulumi\.\$\{STACK\}\.yaml" >> "\$GITHUB_ENV"$', live["run"].strip()
    )
    assert live["env"]["STACK"] == "${{ inputs.stack }}"
    assert LiveCounts({"primary": 6}).summary() == f'{LIVE_COUNTS_VARIABLE}={{"primary":6}}'


def test_nothing_is_deployed_when_the_live_counts_cannot_be_read() -> None:
    # Mid-rollout (exit 4) or no credentials: `pulumi up` must not start at the configured counts.
    outcomes = _deploy("aws", fail={LIVE})
    assert outcomes[UP] == outcomes[VERIFY["aws"]] == outcomes[CLEANUP] == "skipped"


def test_a_rolled_back_deploy_fails_at_verify_shows_the_diff_and_deletes_nothing() -> None:
    # After an auto-rollback `pulumi up` succeeds and verify exits 5: the kept config must survive.
    outcomes = _deploy("aws", fail={VERIFY["aws"]})
    assert outcomes[UP] == "success"
    assert outcomes[SETTLED] == "success"  # still runs, for the diff it shows
    assert outcomes[CLEANUP] == "skipped"


def test_cleanup_waits_for_the_empty_preview_too() -> None:
    outcomes = _deploy("aws", fail={SETTLED})
    assert outcomes[VERIFY["aws"]] == "success" and outcomes[CLEANUP] == "skipped"


def test_cleanup_reads_the_outputs_verify_checked() -> None:
    steps = {step.get("name"): step for step in _steps()}
    verified = re.search(r"model-deploy-verify --stack-outputs (\S+)", steps[VERIFY["aws"]]["run"])
    cleaned = re.search(r"model-deploy-cleanup --stack-outputs (\S+)", steps[CLEANUP]["run"])
    assert verified and cleaned and verified.group(1) == cleaned.group(1)


def test_a_failed_up_runs_no_verify_preview_or_cleanup() -> None:
    outcomes = _deploy("aws", fail={UP})
    assert outcomes[VERIFY["aws"]] == outcomes[SETTLED] == outcomes[CLEANUP] == "skipped"


def test_a_gcp_deploy_verifies_before_its_empty_preview_and_has_no_aws_steps() -> None:
    outcomes = _deploy("gcp")
    ran = _ran(outcomes)
    assert ran.index(UP) < ran.index(VERIFY["gcp"]) < ran.index(SETTLED)
    assert outcomes[LIVE] == outcomes[CLEANUP] == outcomes[VERIFY["aws"]] == "skipped"


@pytest.mark.parametrize("operation", ["preview", "drift"])
def test_previews_and_drift_checks_run_no_deploy_step(operation: str) -> None:
    outcomes = _deploy("aws", operation=operation)
    assert {outcomes[name] for name in (LIVE, UP, VERIFY["aws"], SETTLED, CLEANUP)} == {"skipped"}


# --- preview.yml: a pull request that would replace a prod endpoint fails its check


def _replacement_step() -> dict[str, object]:
    job = simulator().load("preview.yml")["jobs"]["replacement"]
    (step,) = [step for step in job["steps"] if "model-deploy-check-change" in str(step.get("run", ""))]
    return dict(step)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _pull_request(tmp_path: Path, edit: Callable[[str], str], file: str = "Pulumi.aws-prod.yaml") -> Path:
    """A repository whose default branch has the committed stack files and a pull request that edits ``file``."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "user.email", "ci@example.com")
    _git(repo, "config", "user.name", "ci")
    for path in ROOT.glob("Pulumi.*.yaml"):
        shutil.copy(path, repo / path.name)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "base")
    target = repo / file
    target.write_text(edit(target.read_text()))
    _git(repo, "commit", "-qam", "the pull request")
    return repo


def _run_check(tmp_path: Path, repo: Path) -> subprocess.CompletedProcess[str]:
    """The workflow step's own script, with model-deploy-check-change (the console script) on PATH."""
    step = _replacement_step()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    command = bin_dir / "model-deploy-check-change"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m infra.check_change "$@"\n')
    command.chmod(0o755)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "RUNNER_TEMP": str(runner_temp),
        "BASE": _git(repo, "rev-parse", "HEAD~1"),
        "HEAD": _git(repo, "rev-parse", "HEAD"),
    }
    assert step["shell"] == "bash"
    return subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", str(step["run"])],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_pull_request_that_renames_the_prod_endpoint_fails_with_the_reason(tmp_path: Path) -> None:
    repo = _pull_request(tmp_path, lambda text: text.replace("name: digits-prod", "name: digits-prod-2", 1))
    done = _run_check(tmp_path, repo)
    assert done.returncode == 1, done.stdout + done.stderr
    (annotation,) = [line for line in done.stdout.splitlines() if line.startswith("::error")]
    assert "file=Pulumi.aws-prod.yaml" in annotation
    assert "renames prod endpoint 'digits-prod'" in annotation and "ForceNew" in annotation


def test_a_pull_request_that_changes_prod_in_place_passes(tmp_path: Path) -> None:
    repo = _pull_request(tmp_path, lambda text: text.replace("cost-center: ml-platform", "cost-center: ml-serving", 1))
    done = _run_check(tmp_path, repo)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the change to stack aws-prod replaces no prod endpoint" in done.stdout


def test_the_replacement_check_leaves_non_prod_stacks_alone(tmp_path: Path) -> None:
    repo = _pull_request(
        tmp_path, lambda text: text.replace("name: digits-dev", "name: digits-dev-2", 1), file="Pulumi.aws-dev.yaml"
    )
    done = _run_check(tmp_path, repo)
    assert done.returncode == 0 and "::error" not in done.stdout, done.stdout + done.stderr


def test_the_replacement_check_runs_on_every_pull_request_fork_or_not() -> None:
    sim = simulator()
    pr = sim.trigger(
        "preview.yml", "pull_request", {"pull_request": {"number": 7, "head": {"repo": {"full_name": "someone/fork"}}}}
    )
    assert pr is not None
    assert sim.states(pr)["replacement"] == "running"
