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


class TinyEncoder(nn.Module):
    """A transformer-shaped text classifier: token + position embeddings, masked self-attention, mean pooling.

    Its inputs are named like a Hugging Face tokenizer's, so their sequence axis is detected as dynamic;
    positions come from ``input_ids.shape[1]``, so the model itself handles any length up to 32.
    """

    def __init__(self) -> None:
        super().__init__()
        self.tokens = nn.Embedding(50, 8)
        self.positions = nn.Embedding(32, 8)
        self.qkv = nn.Linear(8, 24)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1]).unsqueeze(0)
        hidden = self.tokens(input_ids) + self.positions(positions)
        query, key, value = self.qkv(hidden).chunk(3, dim=-1)
        # Written out rather than nn.MultiheadAttention, whose eval fast path torch.jit.trace cannot check.
        scores = query @ key.transpose(1, 2) / 8**0.5
        scores = scores.masked_fill(attention_mask.unsqueeze(1) == 0, -1e9)
        hidden = scores.softmax(dim=-1) @ value
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled: torch.Tensor = self.head((hidden * mask).sum(dim=1) / mask.sum(dim=1))
        return pooled


class CandidateScorer(nn.Module):
    """A recommender head: one user id and a list of candidate item ids in, one score per candidate out."""

    def __init__(self) -> None:
        super().__init__()
        self.users = nn.Embedding(10, 4)
        self.items = nn.Embedding(40, 4)

    def forward(self, user_id: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        scores: torch.Tensor = (self.items(candidates) * self.users(user_id).unsqueeze(1)).sum(dim=-1)
        return scores


def make_tiny_encoder() -> TinyEncoder:
    """A seeded :class:`TinyEncoder` in eval mode."""
    torch.manual_seed(3)
    return TinyEncoder().eval()


def make_candidate_scorer() -> CandidateScorer:
    """A seeded :class:`CandidateScorer` in eval mode."""
    torch.manual_seed(4)
    return CandidateScorer().eval()


def token_inputs(rows: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Token ids and an attention mask (the last row padded) for :class:`TinyEncoder`."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, 50, size=(rows, length), dtype=np.int64)
    mask = np.ones((rows, length), dtype=np.int64)
    mask[-1, length // 2 :] = 0
    ids[mask == 0] = 0
    return {"input_ids": ids, "attention_mask": mask}


def candidate_inputs(rows: int, candidates: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A user id per row and ``candidates`` item ids per row for :class:`CandidateScorer`."""
    rng = np.random.default_rng(seed)
    return {
        "user_id": rng.integers(0, 10, size=(rows,), dtype=np.int64),
        "candidates": rng.integers(0, 40, size=(rows, candidates), dtype=np.int64),
    }
