"""Scenario 3: behaviour in, recommendations out. A user id and candidate items get the top-k items.

Behaviour is generated: 40 users, 200 items in 4 genres; each user clicks mostly items of one genre.
A matrix-factorisation model learns from the clicks and scores any number of candidates per user
(the candidate axis is dynamic). Ids outside the embedding tables are refused with 400 on every
route (the manifest records each input's valid range).
"""

from __future__ import annotations

import numpy as np

USERS = 40
ITEMS = 200
GENRES = 4


def favourite_genre(user: int) -> int:
    """The genre a generated user mostly clicks."""
    return user % GENRES


def genre(item: int) -> int:
    """An item's genre."""
    return item % GENRES


def clicks(count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` (user, item, clicked) impressions: 90 % of a user's clicks are in their favourite genre."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, USERS, count)
    items = rng.integers(0, ITEMS, count)
    liked = np.array([genre(int(i)) == favourite_genre(int(u)) for u, i in zip(users, items, strict=True)])
    noise = rng.random(count) < 0.1
    return users, items, (liked ^ noise).astype(np.float32)


def train() -> object:
    """A trained ``torch.nn.Module``: ``user_id`` [N, 1] and ``candidates`` [N, C] -> scores [N, C]."""
    import torch
    from torch import nn

    class MatrixFactorisation(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.users = nn.Embedding(USERS, 8)
            self.items = nn.Embedding(ITEMS, 8)

        def forward(self, user_id: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
            scores: torch.Tensor = (self.items(candidates) * self.users(user_id)).sum(dim=-1)
            return scores

    torch.manual_seed(0)
    model = MatrixFactorisation()
    users, items, labels = clicks(20_000, seed=0)
    u = torch.from_numpy(users).unsqueeze(1)
    i = torch.from_numpy(items).unsqueeze(1)
    y = torch.from_numpy(labels).unsqueeze(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        optimiser.zero_grad()
        loss = nn.functional.binary_cross_entropy_with_logits(model(u, i), y)
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return model.eval()


def factory() -> tuple[object, dict[str, np.ndarray], dict[str, list[int]]]:
    """``model-package export examples/scenarios/recommender.py:factory --ids --top-k-items candidates``."""
    users = np.array([[1], [2]], dtype=np.int64)
    candidates = np.arange(10, dtype=np.int64).reshape(2, 5)
    return train(), {"user_id": users, "candidates": candidates}, {"candidates": [1]}
