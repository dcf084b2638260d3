"""Common PyTorch model shapes packaged without glue: ModelOutput-style and NamedTuple returns, dict inputs.

``transformers`` is not installed here, so the ``ModelOutput`` stand-in
below copies what makes it special to exporters: a dataclass that is an
``OrderedDict`` holding only the fields that are set, registered as a pytree
node with its keys as context (as ``transformers.utils.generic`` does).
"""

from __future__ import annotations

import collections
import dataclasses
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

import torch
import torch.utils._pytree as pytree
from torch import nn

from model_package.errors import UsageError
from model_package.export import export_model
from model_package.formats import get_format
from model_package.manifest import read_manifest
from tests.model_package import torch_models

pytestmark = pytest.mark.torch

FORMATS = ["torch_export", "torchscript", "onnx"]
ATOL = 1e-5


@dataclasses.dataclass
class FakeModelOutput(collections.OrderedDict):  # type: ignore[type-arg]
    """Behaves like ``transformers.modeling_outputs.SequenceClassifierOutput`` for exporters and callers."""

    logits: torch.Tensor | None = None
    hidden_states: Any = None
    pooled: torch.Tensor | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None:
                self[field.name] = value


pytree.register_pytree_node(
    FakeModelOutput,
    lambda output: (list(output.values()), list(output.keys())),
    lambda values, keys: FakeModelOutput(**dict(zip(keys, values, strict=True))),
)


class Classifier(nn.Module):
    def __init__(self, nested: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(6, 3)
        self.nested = nested

    def forward(self, x: torch.Tensor) -> FakeModelOutput:
        logits = self.linear(x)
        hidden = (x, logits) if self.nested else None
        return FakeModelOutput(logits=logits, hidden_states=hidden, pooled=logits.tanh())


class Ranked(NamedTuple):
    scores: torch.Tensor
    best: torch.Tensor


class Ranker(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.linear = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> Ranked:
        scores = self.linear(x)
        return Ranked(scores, scores.argmax(dim=-1))


class SentenceEncoder(nn.Module):
    """SentenceTransformer style: forward(features) returns the features dict plus the embeddings."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = torch_models.make_tiny_encoder()

    def forward(self, features: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        embedding = self.encoder(features["input_ids"], features["attention_mask"])
        features.update({"sentence_embedding": torch.nn.functional.normalize(embedding, dim=-1)})
        return features


def _features(rows: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(rows).standard_normal((rows, 6)).astype(np.float32)}


def _package(model: nn.Module, inputs: dict[str, np.ndarray], fmt: str, tmp_path: Path) -> tuple[list[str], Any]:
    export_model(model, inputs, tmp_path / "pkg", name="m", version="1", format=fmt)
    manifest = read_manifest(tmp_path / "pkg")
    return [spec.name for spec in manifest.signature.outputs], get_format(manifest.format).load(
        tmp_path / "pkg", manifest
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_model_output_return_is_flattened_to_its_named_fields(fmt: str, tmp_path: Path) -> None:
    model = Classifier().eval()
    names, loaded = _package(model, _features(), fmt, tmp_path)
    assert sorted(names) == ["logits", "pooled"]  # the unset hidden_states field is not an output

    inputs = _features(5)
    with torch.inference_mode():
        live = model(torch.from_numpy(inputs["x"]))
    got = loaded.predict(inputs)
    for name in ("logits", "pooled"):
        np.testing.assert_allclose(got[name], live[name].numpy(), atol=ATOL)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_named_tuple_return_is_named_after_its_fields(fmt: str, tmp_path: Path) -> None:
    model = Ranker().eval()
    names, loaded = _package(model, _features(), fmt, tmp_path)
    assert names == ["scores", "best"]
    inputs = _features(5)
    with torch.inference_mode():
        live = model(torch.from_numpy(inputs["x"]))
    got = loaded.predict(inputs)
    np.testing.assert_allclose(got["scores"], live.scores.numpy(), atol=ATOL)
    np.testing.assert_array_equal(got["best"], live.best.numpy())


@pytest.mark.parametrize("fmt", ["torch_export", "torchscript"])
def test_nested_model_output_fields_are_refused_with_what_to_do(fmt: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        export_model(Classifier(nested=True).eval(), _features(), tmp_path / "pkg", name="m", version="1", format=fmt)
    message = str(caught.value)
    assert "hidden_states" in message
    assert "output_hidden_states=False" in message
    assert "return_dict=False" in message
    assert str(tmp_path) not in message and ".partial-" not in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_forward_taking_one_dict_of_tensors_is_packaged_with_its_keys_as_inputs(fmt: str, tmp_path: Path) -> None:
    model = SentenceEncoder().eval()
    export_model(model, torch_models.token_inputs(3, 6), tmp_path / "pkg", name="st", version="1", format=fmt)
    manifest = read_manifest(tmp_path / "pkg")
    assert [(s.name, list(s.shape)) for s in manifest.signature.inputs] == [
        ("input_ids", [-1, -1]),
        ("attention_mask", [-1, -1]),
    ]
    # The echoed input tensors are not outputs; the embedding is.
    assert [spec.name for spec in manifest.signature.outputs] == ["sentence_embedding"]
    loaded = get_format(manifest.format).load(tmp_path / "pkg", manifest)
    for length in (4, 9):
        inputs = torch_models.token_inputs(2, length, seed=length)
        with torch.inference_mode():
            live = model({name: torch.from_numpy(array) for name, array in inputs.items()})["sentence_embedding"]
        np.testing.assert_allclose(loaded.predict(inputs)["sentence_embedding"], live.numpy(), atol=ATOL)
    assert model.training is False  # the adapter leaves the user's model as it found it


def test_export_errors_never_name_the_deleted_staging_directory(tmp_path: Path) -> None:
    from model_package.builder import PackageSpec, build_package
    from model_package.errors import ExportError

    def stage(staging: Path) -> Any:
        raise ExportError(f"cannot read {staging}/model.onnx: input 'x' has no declared rank")

    spec = PackageSpec(name="m", version="1", format="onnx", example_inputs=_features())
    with pytest.raises(ExportError) as caught:
        build_package(tmp_path / "pkg", spec, stage)
    assert str(caught.value) == "cannot read model.onnx: input 'x' has no declared rank"
