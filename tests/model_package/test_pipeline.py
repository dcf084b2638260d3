"""Declaring a pipeline at packaging: the manifest entry, its files, and verification on the raw example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from model_package.cli import main
from model_package.errors import ManifestError
from model_package.manifest import SCHEMA_VERSION, Signature, TensorSpec, parse_manifest, read_manifest
from tests.pipeline_models import LABELS, package_image_classifier


@pytest.fixture(scope="module")
def image_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return package_image_classifier(tmp_path_factory.mktemp("pipeline") / "pkg")


def test_export_attaches_an_image_pipeline_with_defaults_from_the_signature(image_package: Path) -> None:
    manifest = read_manifest(image_package)
    assert manifest.schema_version == SCHEMA_VERSION == "1.2"
    assert manifest.pipeline is not None
    image = manifest.pipeline.input
    assert (image.kind, image.height, image.width, image.layout, image.channels) == ("image", 32, 32, "NCHW", "RGB")
    assert (image_package / "pipeline/labels.txt").read_text().split() == list(LABELS)
    answers = json.loads((image_package / "example/raw_outputs.json").read_text())
    assert len(answers) == 2
    assert all(sorted(answer["labels"]) == sorted(LABELS) for answer in answers)
    assert all(abs(sum(answer["scores"]) - 1.0) < 1e-6 for answer in answers)


def test_verify_runs_the_pipeline_on_the_raw_example(image_package: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(image_package), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pipeline"].startswith("ok (image -> labels; raw example of 2 ran")


def test_verify_fails_when_the_pipeline_answers_differ(
    image_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from model_package.builder import hash_tree
    from model_package.manifest import write_manifest

    copy = tmp_path / "copy"
    shutil.copytree(image_package, copy)
    answers = json.loads((copy / "example/raw_outputs.json").read_text())
    answers[0]["labels"].reverse()
    (copy / "example/raw_outputs.json").write_text(json.dumps(answers))
    manifest = read_manifest(copy)
    write_manifest(copy, manifest.model_copy(update={"files": hash_tree(copy)}))
    assert main(["verify", str(copy)]) == 6
    assert "raw example item 0: labels" in capsys.readouterr().err


def test_a_pipeline_needs_a_raw_example(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.pipeline_models import __file__ as models_file

    code = main(
        [
            "export",
            f"{models_file}:image_factory",
            "--name",
            "x",
            "--version",
            "1",
            "-o",
            str(tmp_path / "p"),
            "--image",
            "",
            "--classes",
        ]
    )
    assert code == 2
    assert "at least one raw example" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_image_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.pipeline_models import __file__ as models_file
    from tests.pipeline_models import sample_images

    code = main(
        [
            "export",
            f"{models_file}:image_factory",
            "--name",
            "x",
            "--version",
            "1",
            "-o",
            str(tmp_path / "p"),
            "--image",
            "size=32",
            "--classes",
            "--raw-example",
            str(sample_images()[0]),
        ]
    )
    assert code == 2
    assert "size='32' must be HEIGHTxWIDTH" in capsys.readouterr().err


def test_a_uint8_image_input_gets_raw_pixels_and_refuses_normalisation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The usual Keras pattern (uint8 input, Rescaling inside): every request failed "has dtype float32"."""
    from model_package.pipeline.runner import PipelineRunner
    from tests.pipeline_models import __file__ as models_file
    from tests.pipeline_models import sample_images

    def export(out: Path, *image: str) -> int:
        args = ["export", f"{models_file}:raw_pixel_factory", "--name", "raw", "--version", "1", "-o", str(out)]
        return main([*args, *image, "--classes", "--raw-example", str(sample_images()[0])])

    # Verification ran the raw example through it; identity values, even per channel, are no normalisation.
    assert export(tmp_path / "p", "--image", "resize=36,scale=1,mean=0/0/0,std=1/1/1") == 0
    manifest = read_manifest(tmp_path / "p")
    inputs = PipelineRunner(tmp_path / "p", manifest).preprocess([sample_images()[1].read_bytes()])
    assert inputs["x"].dtype == "uint8" and inputs["x"].shape == (1, 3, 32, 32)
    assert int(inputs["x"].max()) > 1  # pixels, not pixels / 255
    capsys.readouterr()

    assert export(tmp_path / "q", "--image", "resize=36,scale=0.5,mean=0/0.5/0") == 2
    assert "takes uint8 pixels (0-255, scaled by the model itself), so --image scale=0.5,mean=0/0.5/0 cannot" in (
        capsys.readouterr().err
    )


def _raw_manifest(image_package: Path) -> dict[str, Any]:
    raw: dict[str, Any] = json.loads((image_package / "manifest.json").read_text())
    return raw


def test_a_reader_refuses_a_pipeline_kind_it_does_not_know(image_package: Path) -> None:
    raw = _raw_manifest(image_package)
    raw["schema_version"] = "1.9"
    raw["pipeline"]["input"]["kind"] = "audio"
    with pytest.raises(ManifestError, match=r"unknown pipeline kind 'audio'.*upgrade model-package"):
        parse_manifest(json.dumps(raw))


def test_a_pipeline_must_name_the_models_own_inputs_and_outputs(image_package: Path) -> None:
    raw = _raw_manifest(image_package)
    raw["pipeline"]["output"]["output"] = "probabilities"
    with pytest.raises(ManifestError, match="'probabilities', which is not a model output"):
        parse_manifest(json.dumps(raw))


def test_a_pipeline_file_must_be_in_the_package(image_package: Path) -> None:
    raw = _raw_manifest(image_package)
    raw["files"] = [entry for entry in raw["files"] if entry["path"] != "pipeline/labels.txt"]
    with pytest.raises(ManifestError, match=r"'pipeline/labels\.txt' is referenced by the manifest but not listed"):
        parse_manifest(json.dumps(raw))


def test_embeddings_mean_pool_over_real_tokens_only_and_are_unit_length() -> None:
    import numpy as np

    from model_package.pipeline.outputs import answer_embeddings
    from model_package.pipeline.schema import EmbeddingOutput, TextInput

    states = np.array([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])  # the third token is padding
    mask = np.array([[1, 1, 0]])
    spec = EmbeddingOutput(output="h", pooling="mean", normalize=True)
    (answer,) = answer_embeddings(states, spec, {"attention_mask": mask}, TextInput())
    assert answer["embedding"] == pytest.approx([2.0 / np.hypot(2, 2), 2.0 / np.hypot(2, 2)])
    raw = EmbeddingOutput(output="h", pooling="cls", normalize=False)
    assert answer_embeddings(states, raw, {}, None)[0]["embedding"] == [1.0, 0.0]


def test_an_image_pipeline_silences_the_fixed_axes_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.pipeline_models import __file__ as models_file

    # The CLI logs to stderr (its handler replaces any other): read what a user sees.
    package_image_classifier(tmp_path / "with-pipeline")
    assert "axes are fixed" not in capsys.readouterr().err
    assert (
        main(["export", f"{models_file}:image_factory", "--name", "x", "--version", "1", "-o", str(tmp_path / "p")])
        == 0
    )
    assert "x[1]=3, x[2]=32, x[3]=32" in capsys.readouterr().err


def _text_signature(length: int) -> Signature:
    return Signature(
        inputs=(
            TensorSpec(name="input_ids", dtype="int64", shape=(-1, length)),
            TensorSpec(name="attention_mask", dtype="int64", shape=(-1, length)),
        ),
        outputs=(TensorSpec(name="logits", dtype="float32", shape=(-1, 2)),),
    )


def test_text_is_truncated_keeping_the_closing_special_token_and_padded_per_request(tmp_path: Path) -> None:
    from model_package.pipeline.schema import TextInput
    from model_package.pipeline.text import TextEncoder
    from tests.pipeline_models import train_tokenizer

    tokenizer = train_tokenizer(tmp_path / "tokenizer.json")
    encoder = TextEncoder(tokenizer, TextInput(max_length=5), _text_signature(-1))
    batch = encoder.encode(["great", "a great and happy film that was great"])
    assert batch["input_ids"].shape == (2, 5)  # the longest text, cut at max_length
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    sep = 3  # [SEP]: the template's closing token survives truncation
    assert batch["input_ids"][1, -1] == sep and batch["input_ids"][0, 2] == sep
    assert encoder.encode(["great"])["input_ids"].shape == (1, 3)  # a request alone pads to its own length


def test_text_is_padded_to_a_fixed_sequence_length_when_the_model_has_one(tmp_path: Path) -> None:
    from model_package.pipeline.schema import TextInput
    from model_package.pipeline.text import TextEncoder
    from tests.pipeline_models import train_tokenizer

    tokenizer = train_tokenizer(tmp_path / "tokenizer.json")
    encoder = TextEncoder(tokenizer, TextInput(max_length=128), _text_signature(8))
    assert encoder.encode(["great"])["input_ids"].shape == (1, 8)
    assert encoder.encode(["great " * 50])["attention_mask"].sum() == 8


def test_import_attaches_a_pipeline_to_a_saved_artifact(
    image_package: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.pipeline_models import sample_images

    code = main(
        [
            "import",
            str(image_package / "model.pt2"),
            "--name",
            "imported",
            "--version",
            "1",
            "-o",
            str(tmp_path / "p"),
            "--image",
            "mean=0.5,std=0.5",
            "--classes",
            "--top-k",
            "1",
            "--raw-example",
            str(sample_images()[1]),
            "--json",
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["pipeline"].startswith("ok (image -> labels")
    manifest = read_manifest(tmp_path / "p")
    assert manifest.pipeline is not None and manifest.pipeline.output.kind == "labels"
    (answer,) = json.loads((tmp_path / "p/example/raw_outputs.json").read_text())
    assert answer["labels"] in ([0], [1]) and len(answer["scores"]) == 1


def _served_texts(package: Path, texts: list[str]) -> httpx.Response:
    """``{"instances": texts}`` to ``/invocations`` of ``package``, served in this process."""
    import asyncio

    from inference.app import create_app
    from inference.config import load_config
    from inference.metrics import ServerMetrics
    from inference.service import load_service

    config = load_config({"MODEL_SERVER_LOG_LEVEL": "WARNING"}, model_dir=package)
    metrics = ServerMetrics()
    service = load_service(config, observer=metrics)
    app = create_app(service, config, metrics)

    async def ask() -> httpx.Response:
        await service.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.post("/invocations", json={"instances": texts})
        finally:
            await service.stop()

    return asyncio.run(ask())


def test_text_is_truncated_to_the_models_table_of_positions(tmp_path: Path) -> None:
    """``--max-length 16`` for a model of 6 positions: texts stop at 6 tokens, the model's most.

    Before, the 7-token raw example failed inside the model and the export with it; a served text of
    7 tokens or more was a 500 ("index out of range in self"), counted against the endpoint.
    """
    from tests.pipeline_models import package_text_classifier

    package = package_text_classifier(tmp_path / "pkg", "positional_text_factory")
    response = _served_texts(package, ["a great and happy film " * 10, "sad"])
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def test_an_empty_text_is_answered_when_the_tokenizer_adds_no_special_tokens(tmp_path: Path) -> None:
    """The pipeline's own all-0 mask (an empty text has no token) is not a client's: a 200, as before
    the mask check for clients' tensors."""
    from tests.pipeline_models import package_text_classifier

    package = package_text_classifier(tmp_path / "pkg", special_tokens=False)
    response = _served_texts(package, ["a great film", ""])
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"]) == 2


def _bpe_tokenizer(path: Path) -> Path:
    """A byte-level BPE tokenizer (GPT-2's and RoBERTa's kind), trained here."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from tests.pipeline_models import TEXTS

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    tokenizer.train_from_iterator(TEXTS, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet))
    tokenizer.save(str(path))
    return path


LONG_TEXTS = [  # each past the longest head below (128 tokens x 32 characters), most past twice that
    "a great and happy film " * 500,
    " " * 10_000 + "great film " * 100,  # a head of nothing but spaces
    "!" * 20_000,  # a token per character
    "x" * 20_000,  # one word: read whole
    "great" * 4_000,  # one word of many tokens
    "e\u0301 " * 5_000,  # combining accents (normalised away by the WordPiece tokenizer)
    "Ünïcödé wörds, sad! " * 1_000,
    "sad   \n" * 3_000,
    "we" + " " * 123 + "[SEP] of words" * 100,  # an added token across the cut of a 4-token head
    "great'll sad've happy'd " * 300,  # GPT-2's contractions ('ll) across the cut
]


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_a_long_text_gives_the_tokens_of_the_whole_text_from_its_head(tmp_path: Path, kind: str) -> None:
    """Truncation keeps the first max_length tokens, yet the tokenizer worked through the whole text
    first (3 us a token: 5.5 MB of '!' took 20 s of CPU for a request that kept 16 tokens, holding the
    interpreter throughout). From the head, the tokens must be exactly the whole text's."""
    from tokenizers import Tokenizer

    from model_package.pipeline.schema import TextInput
    from model_package.pipeline.text import TextEncoder
    from tests.pipeline_models import train_tokenizer

    path = train_tokenizer(tmp_path / "t.json") if kind == "wordpiece" else _bpe_tokenizer(tmp_path / "t.json")
    whole = Tokenizer.from_file(str(path))
    for max_length in (4, 128):
        encoder = TextEncoder(path, TextInput(max_length=max_length), _text_signature(-1))
        whole.enable_truncation(max_length)
        for text in LONG_TEXTS:
            for start in (0, 1, 3, 5, 191):  # where the head's end falls moves with the text's start
                got = encoder.encode([text[start:]])["input_ids"][0].tolist()
                assert got == whole.encode(text[start:]).ids, (kind, max_length, text[:20], start)


def test_a_long_text_of_many_words_is_read_from_its_head_only(tmp_path: Path) -> None:
    from model_package.pipeline.schema import TextInput
    from model_package.pipeline.text import TextEncoder
    from tests.pipeline_models import train_tokenizer

    encoder = TextEncoder(train_tokenizer(tmp_path / "t.json"), TextInput(max_length=16), _text_signature(-1))
    read: list[int] = []
    tokenizer = encoder._tokenizer
    encode_batch = tokenizer.encode_batch

    class Spy:
        def __getattr__(self, name: str) -> object:
            return getattr(tokenizer, name)

        def encode_batch(self, texts: list[str]) -> object:
            read.extend(len(text) for text in texts)
            return encode_batch(texts)

    encoder._tokenizer = Spy()  # type: ignore[assignment]
    assert encoder.encode(["!" * 5_000_000])["input_ids"].shape == (1, 16)
    assert max(read) <= 16 * 64, f"read {max(read):,} characters of the text for 16 tokens"


def _word_level(**parts: object) -> object:
    """A WordLevel tokenizer of a few words, with the given normalizer / pre_tokenizer / added tokens."""
    from tokenizers import AddedToken, Tokenizer, models

    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1, " ": 2, "x": 3, '"': 4, "d": 5}, "[UNK]"))
    for name, value in parts.items():
        if name == "lstrip_token":
            tokenizer.add_special_tokens([AddedToken(str(value), lstrip=True)])
        else:
            setattr(tokenizer, name, value)
    return tokenizer


def test_tokenizers_that_look_past_the_cut_give_the_whole_texts_tokens(tmp_path: Path) -> None:
    """Three designs broke the head's rule (a review of it): an added token with lstrip takes in all the
    whitespace before it; a user's regular expression (a quoted span in a Split, a Replace) can span
    any length. The first keeps the shortcut with a rule of its own; the others read whole texts."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

    from model_package.pipeline.schema import TextInput
    from model_package.pipeline.text import TextEncoder

    cases = [
        (_word_level(pre_tokenizer=pre_tokenizers.Split(" ", "isolated"), lstrip_token="<mask>"),
         "hello" + " " * 400 + "<mask> x"),
        (_word_level(pre_tokenizer=pre_tokenizers.Split(Regex(r'"[^"]*"|\w+|\s|[^\w\s]'), "isolated")),
         'hello "d' + " d" * 200 + '" x'),
        (_word_level(normalizer=normalizers.Replace(Regex(r"d( d)*x"), "x"),
                     pre_tokenizer=pre_tokenizers.Split(" ", "isolated")),
         "hello d" + " d" * 200 + "x hello"),
    ]  # fmt: skip
    for index, (tokenizer, text) in enumerate(cases):
        path = tmp_path / f"t{index}.json"
        tokenizer.save(str(path))  # type: ignore[attr-defined]
        whole = Tokenizer.from_file(str(path))
        whole.enable_truncation(8)
        got = TextEncoder(path, TextInput(max_length=8), _text_signature(-1)).encode([text])["input_ids"][0]
        assert got.tolist() == whole.encode(text).ids, index
