"""``model-deploy-check-change``: a pull request's stack-file change against the deployed one.

The base is the committed prod stack; each case edits a copy as a pull request would and runs
the command as CI does.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.check_change import main

ROOT = Path(__file__).resolve().parents[2]
PROD = ROOT / "Pulumi.aws-prod.yaml"

Edit = Callable[[dict[str, Any]], None]


def _aws(document: dict[str, Any]) -> dict[str, Any]:
    section: dict[str, Any] = document["config"]["model-deploy:aws"]
    return section


def _files(tmp_path: Path, edit: Edit, base: Path = PROD) -> tuple[Path, Path]:
    (tmp_path / "base").mkdir()
    before = tmp_path / "base" / base.name
    before.write_text(base.read_text())
    document = yaml.safe_load(base.read_text())
    edit(document)
    after = tmp_path / base.name
    after.write_text(yaml.safe_dump(document))
    return before, after


def _run(capsys: pytest.CaptureFixture[str], before: Path, after: Path) -> tuple[int, str, str]:
    code = main(["--base", str(before), "--head", str(after)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rename(document: dict[str, Any]) -> None:
    _aws(document)["endpoint"]["name"] = "digits-prod-v2"


def _drop_deployment(document: dict[str, Any]) -> None:
    del _aws(document)["endpoint"]["deployment"]


def _move_region(document: dict[str, Any]) -> None:
    document["config"]["aws:region"] = "eu-west-1"
    image = document["config"]["model-deploy:package"]["image"]
    document["config"]["model-deploy:package"]["image"] = image.replace("us-east-1", "eu-west-1")


def test_a_rename_is_refused_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, *_files(tmp_path, _rename))
    assert (code, out) == (1, "")
    assert err.count("\n") == 1
    assert err.startswith(
        "model-deploy-check-change: refused: model-deploy:aws.endpoint.name: 'digits-prod-v2' renames prod "
        "endpoint 'digits-prod', which replaces the prod endpoint (ForceNew in the AWS provider"
    )


def test_every_replacing_change_is_counted(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def everything(document: dict[str, Any]) -> None:
        _rename(document)
        _move_region(document)

    code, _, err = _run(capsys, *_files(tmp_path, everything))
    assert code == 1 and err.rstrip().endswith("(and 1 more problems)")


def test_removing_the_deployment_section_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Prod needs the section anyway, so the head stack is invalid before it is compared.
    code, _, err = _run(capsys, *_files(tmp_path, _drop_deployment))
    assert code == 2 and "model-deploy:aws.endpoint.deployment: is required in prod" in err


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(
            lambda d: _aws(d)["endpoint"]["deployment"].update(rollbackAlarms=["digits-prod-business-kpi"]),
            id="adds-a-rollback-alarm",
        ),
        pytest.param(lambda d: _aws(d)["endpoint"]["alarms"].update(modelLatencyP99Ms=200), id="tightens-latency"),
        pytest.param(
            lambda d: _aws(d)["endpoint"]["deployment"].update(
                strategy="linear", canaryPercent=None, linearStepPercent=50
            ),
            id="changes-strategy",
        ),
        pytest.param(lambda d: _aws(d)["endpoint"]["variants"][0].update(instanceType="ml.m6i.xlarge"), id="resizes"),
    ],
)
def test_changes_that_update_in_place_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path, edit: Edit) -> None:
    def apply(document: dict[str, Any]) -> None:
        edit(document)
        deployment = _aws(document)["endpoint"]["deployment"]
        for key in [key for key, value in deployment.items() if value is None]:
            del deployment[key]

    code, out, err = _run(capsys, *_files(tmp_path, apply))
    assert (code, err) == (0, "")
    assert out == "OK: the change to stack aws-prod replaces no prod endpoint\n"


def test_dev_stacks_may_rename_their_endpoint(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _ = _run(capsys, *_files(tmp_path, _rename, base=ROOT / "Pulumi.aws-dev.yaml"))
    assert code == 0


def test_two_different_stacks_are_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, PROD, ROOT / "Pulumi.aws-staging.yaml")
    assert code == 2 and "--base is stack 'aws-prod' but --head is 'aws-staging'" in err
