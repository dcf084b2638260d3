"""A small PyTorch MLP trained with gradient descent on the digits; ``factory`` is the CLI entry."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from examples.digits.data import INPUT_NAME, NUM_CLASSES, NUM_FEATURES, load_digits_split


class DigitsMLP(nn.Module):
    """64 pixels -> 64 hidden units (ReLU) -> 10 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(NUM_FEATURES, 64), nn.ReLU(), nn.Linear(64, NUM_CLASSES))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(pixels)
        return logits


def train(epochs: int = 150, seed: int = 0) -> DigitsMLP:
    """Full-batch Adam on the training split; takes about a second on one CPU core."""
    torch.manual_seed(seed)
    split = load_digits_split()
    model = DigitsMLP()
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        optimiser.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
    return model.eval()


def factory() -> tuple[nn.Module, dict[str, np.ndarray]]:
    """``model-package export examples.digits.torch_model:factory``: the trained model and an example batch."""
    return train(), {INPUT_NAME: load_digits_split().x_test[:4]}
