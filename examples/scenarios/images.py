"""Scenario 1: an uploaded photo gets labels. A small CNN told apart the two photos scikit-learn ships.

Training data are random square crops of ``china.jpg`` and ``flower.jpg`` (the only photos available
offline), prepared exactly as the package's declared pipeline prepares an upload: resized to 32x32,
scaled to [0, 1], normalised with the ImageNet mean and std, NCHW.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

LABELS = ("china", "flower")
SIZE = 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: The ``--image`` option text for this model (the CLI spelling of the pipeline below).
IMAGE_OPTIONS = f"resize={SIZE},mean={'/'.join(map(str, MEAN))},std={'/'.join(map(str, STD))}"


def photos() -> list[Path]:
    """The sample photos scikit-learn ships, in label order."""
    import sklearn.datasets

    folder = Path(sklearn.datasets.__file__).parent / "images"
    return [folder / f"{label}.jpg" for label in LABELS]


def random_crops(count: int, seed: int) -> tuple[list[Any], np.ndarray]:
    """``count`` random square crops (PIL images, 120-420 px) of the photos, and their labels."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.open(path).convert("RGB") for path in photos()]
    crops, labels = [], []
    for _ in range(count):
        label = int(rng.integers(0, len(images)))
        image = images[label]
        side = int(rng.integers(120, min(image.size) + 1))
        left = int(rng.integers(0, image.width - side + 1))
        top = int(rng.integers(0, image.height - side + 1))
        crops.append(image.crop((left, top, left + side, top + side)))
        labels.append(label)
    return crops, np.asarray(labels, dtype=np.int64)


def to_tensor(images: list[object]) -> np.ndarray:
    """Crops as the pipeline prepares uploads (bilinear resize to 32x32, normalised, NCHW)."""
    from PIL import Image

    rows = []
    for image in images:
        assert isinstance(image, Image.Image)
        rows.append(np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BILINEAR), dtype=np.float32))
    batch = (np.stack(rows) / 255.0 - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def train() -> object:
    """A trained ``torch.nn.Module``: [N, 3, 32, 32] -> [N, 2] logits (a few seconds on a CPU)."""
    import torch
    from torch import nn

    class PhotoNet(nn.Module):
        def __init__(self, layers: nn.Module) -> None:
            super().__init__()
            self.layers = layers

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.layers(image)
            return logits

    torch.manual_seed(0)
    layers = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, len(LABELS)),
    )
    model = PhotoNet(layers)
    crops, labels = random_crops(400, seed=0)
    x, y = torch.from_numpy(to_tensor(crops)), torch.from_numpy(labels)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return model.eval()


def factory() -> tuple[object, dict[str, np.ndarray]]:
    """``model-package export examples/scenarios/images.py:factory --image ... --labels ...``."""
    crops, _ = random_crops(2, seed=1)
    return train(), {"image": to_tensor(crops)}
