"""Small real models with declared pipelines, packaged through the CLI as a user would (shared by tests)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from torch import nn

from model_package.cli import main as model_package_main

LABELS = ("china", "flower")


class TinyImageNet(nn.Module):
    """3x32x32 images in, 2 logits out."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.conv(x).mean(dim=(2, 3)))
        return logits


def image_factory() -> tuple[nn.Module, dict[str, np.ndarray]]:
    """The factory ``model-package export`` calls."""
    return TinyImageNet().eval(), {"x": np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)}


class RawPixelNet(TinyImageNet):
    """uint8 3x32x32 pixels in, scaled by the model itself (as a Keras ``Rescaling`` layer does), 2 logits out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float() / 255.0)


def raw_pixel_factory() -> tuple[nn.Module, dict[str, np.ndarray]]:
    """A model whose image input is uint8."""
    return RawPixelNet().eval(), {"x": np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)}


def sample_images() -> list[Path]:
    """The JPEG photos scikit-learn ships (china.jpg, flower.jpg)."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    return [folder / "china.jpg", folder / "flower.jpg"]


def encode_image(array: np.ndarray, fmt: str) -> bytes:
    """An HxWx3 uint8 array as JPEG or PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def package_image_classifier(out: Path, *extra: str) -> Path:
    """Export the tiny image model with an image -> labels pipeline through the CLI."""
    labels = out.parent / f"{out.name}-labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    raw = [arg for path in sample_images() for arg in ("--raw-example", str(path))]
    code = model_package_main(
        [
            "export",
            f"{__file__}:image_factory",
            "--name",
            "tiny-image",
            "--version",
            "1",
            "-o",
            str(out),
            "--image",
            "resize=36,mean=0.485/0.456/0.406,std=0.229/0.224/0.225",
            "--labels",
            str(labels),
            *raw,
            *extra,
        ]
    )
    assert code == 0
    return out


SENTIMENTS = ("negative", "positive")
TEXTS = ["a great and happy film", "a bad and sad film", "great acting", "sad ending", "happy happy", "bad bad"]


def train_tokenizer(path: Path, *, special_tokens: bool = True) -> Path:
    """A small WordPiece tokenizer trained here (no pretrained file can be downloaded), saved as tokenizer.json.

    ``special_tokens=False``: no [CLS] ... [SEP] around a text, so an empty text has no token at all.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=60, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tokenizer.train_from_iterator(TEXTS, trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    if special_tokens:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
        )
    tokenizer.save(str(path))
    return path


class TinyTextNet(nn.Module):
    """Token ids and attention mask in (any length), 2 logits out: masked mean of embeddings, then a linear head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = nn.Embedding(60, 8)
        self.head = nn.Linear(8, 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        logits: torch.Tensor = self.head(pooled)
        return logits


def text_factory() -> tuple[nn.Module, dict[str, np.ndarray]]:
    """Export factory: ids of shape [2, 6] (axis 1 is detected as the sequence axis)."""
    ids = np.array([[2, 5, 6, 7, 8, 3], [2, 9, 10, 3, 0, 0]], dtype=np.int64)
    return TinyTextNet().eval(), {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}


class PositionalTextNet(TinyTextNet):
    """TinyTextNet plus 6 learned positions: like BERT, it takes at most as many tokens as its table holds."""

    def __init__(self) -> None:
        super().__init__()
        self.positions = nn.Embedding(6, 8)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(torch.float32)
        placed = self.embed(input_ids) + self.positions(torch.arange(input_ids.shape[1]).unsqueeze(0))
        logits: torch.Tensor = self.head((placed * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0))
        return logits


def positional_text_factory() -> tuple[nn.Module, dict[str, np.ndarray]]:
    """Export factory: :func:`text_factory`'s ids, for the model with a table of 6 positions."""
    return PositionalTextNet().eval(), text_factory()[1]


def package_text_classifier(out: Path, factory: str = "text_factory", *, special_tokens: bool = True) -> Path:
    """Export the tiny text model with a text -> labels pipeline through the CLI."""
    tokenizer = train_tokenizer(out.parent / f"{out.name}-tokenizer.json", special_tokens=special_tokens)
    labels = out.parent / f"{out.name}-labels.txt"
    labels.write_text("\n".join(SENTIMENTS) + "\n")
    example = out.parent / f"{out.name}-example.txt"
    example.write_text(TEXTS[0])
    code = model_package_main(
        [
            "export",
            f"{__file__}:{factory}",
            "--name",
            "tiny-text",
            "--version",
            "1",
            "-o",
            str(out),
            "--tokenizer",
            str(tokenizer),
            "--max-length",
            "16",
            "--labels",
            str(labels),
            "--top-k",
            "1",
            "--raw-example",
            str(example),
        ]
    )
    assert code == 0
    return out


class TinyRecommender(nn.Module):
    """A user id and candidate item ids in, one score per candidate out (dot product of embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.users = nn.Embedding(10, 4)
        self.items = nn.Embedding(50, 4)

    def forward(self, user_id: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = (self.items(candidates) * self.users(user_id)).sum(dim=-1)
        return scores


def recommender_factory() -> tuple[nn.Module, dict[str, np.ndarray], dict[str, list[int]]]:
    """Export factory: user ids [2, 1], candidates [2, 5] with a dynamic candidate axis."""
    users = np.array([[1], [2]], dtype=np.int64)
    candidates = np.array([[3, 9, 12, 20, 41], [0, 1, 2, 3, 4]], dtype=np.int64)
    return TinyRecommender().eval(), {"user_id": users, "candidates": candidates}, {"candidates": [1]}


def package_recommender(out: Path) -> Path:
    """Export the tiny recommender with an ids -> top-k items pipeline through the CLI."""
    example = out.parent / f"{out.name}-example.json"
    example.write_text('{"user_id": 3, "candidates": [5, 7, 11, 13, 17, 19]}')
    code = model_package_main(
        [
            "export",
            f"{__file__}:recommender_factory",
            "--name",
            "tiny-recommender",
            "--version",
            "1",
            "-o",
            str(out),
            "--ids",
            "--top-k-items",
            "candidates",
            "--top-k",
            "3",
            "--raw-example",
            str(example),
        ]
    )
    assert code == 0
    return out
