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
