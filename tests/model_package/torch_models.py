"""Small, real PyTorch models (and example inputs) for format and serving tests.

Every factory seeds its own generator, so two calls build identical weights and
tests can compare a packaged model with a freshly built live one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    """A classifier head: 64 float features -> 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.layers(x)
        return logits


class TwoInTwoOut(nn.Module):
    """Float features plus integer token ids in; (logits, probabilities) out as a tuple."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 6)
        self.dense = nn.Linear(8, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, features: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = torch.tanh(self.dense(features) + self.embed(ids).mean(dim=1))
        logits = self.head(hidden)
        return logits, logits.softmax(dim=-1)


class DictHead(nn.Module):
    """One input, named outputs returned as a dict (like many detection / ranking heads)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        scores = self.linear(x)
        return {"scores": scores, "best": scores.argmax(dim=-1)}


def make_mlp() -> MLP:
    """A seeded MLP in eval mode."""
    torch.manual_seed(0)
    return MLP().eval()


def make_two_in_two_out() -> TwoInTwoOut:
    """A seeded two-input / two-output model in eval mode."""
    torch.manual_seed(1)
    return TwoInTwoOut().eval()


def make_dict_head() -> DictHead:
    """A seeded dict-returning model in eval mode."""
    torch.manual_seed(2)
    return DictHead().eval()


def mlp_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for :class:`MLP`."""
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, 64), dtype=np.float32)}


def two_in_two_out_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for :class:`TwoInTwoOut` (the dict order differs from forward() on purpose)."""
    rng = np.random.default_rng(seed)
    return {
        "ids": rng.integers(0, 20, size=(rows, 4), dtype=np.int64),
        "features": rng.standard_normal((rows, 8), dtype=np.float32),
    }


def dict_head_inputs(rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs for :class:`DictHead`."""
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, 5), dtype=np.float32)}
