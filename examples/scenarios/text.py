"""Scenario 2: text gets its sentiment, through a real ``tokenizers`` tokenizer bundled in the package.

No pretrained weights or tokenizer can be downloaded here (only package registries are reachable,
and none ships a tokenizer.json with weights to match), so both are trained in seconds: a
WordPiece tokenizer on a small generated corpus, and a bag-of-embeddings classifier over its ids.
The package format is the same as for a real BERT-style model: ``input_ids`` and
``attention_mask`` of any length, ``tokenizer.json`` in ``pipeline/``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS = ("negative", "positive")
_GOOD = ["great", "wonderful", "brilliant", "moving", "funny", "delightful", "superb", "charming"]
_BAD = ["awful", "boring", "dull", "terrible", "clumsy", "tedious", "painful", "weak"]
_THINGS = ["film", "plot", "acting", "story", "ending", "music", "script", "cast"]
_FRAMES = ["the {t} was {w}", "a {w} {t}", "what a {w} {t} !", "honestly , the {t} felt {w}", "{w} , simply {w}"]


def corpus(count: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``count`` generated reviews and their labels (1 = positive)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(count):
        label = int(rng.integers(0, 2))
        words = _GOOD if label else _BAD
        frame = _FRAMES[int(rng.integers(0, len(_FRAMES)))]
        texts.append(frame.format(t=rng.choice(_THINGS), w=rng.choice(words)))
        labels.append(label)
    return texts, np.asarray(labels, dtype=np.int64)


def train_tokenizer(path: Path) -> Path:
    """Train a lower-casing WordPiece tokenizer with BERT's special tokens; save it as ``tokenizer.json``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]"])
    tokenizer.train_from_iterator(corpus(500, seed=3)[0], trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def encode(tokenizer_path: Path, texts: list[str]) -> dict[str, np.ndarray]:
    """Ids and mask padded to the longest text: what the server's pipeline produces."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    encodings = [tokenizer.encode(text) for text in texts]
    width = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(texts), width), dtype=np.int64)
    for row, encoding in enumerate(encodings):
        ids[row, : len(encoding.ids)] = encoding.ids
    return {"input_ids": ids, "attention_mask": (ids != 0).astype(np.int64)}


def build(tokenizer_path: Path) -> object:
    """A trained classifier over the tokenizer's ids (masked mean of embeddings, then a linear layer)."""
    import torch
    from torch import nn

    class BagOfEmbeddings(nn.Module):
        def __init__(self, vocab: int) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, 16)
            self.head = nn.Linear(16, len(LABELS))

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            pooled = (self.embed(input_ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
            logits: torch.Tensor = self.head(pooled)
            return logits

    torch.manual_seed(0)
    model = BagOfEmbeddings(200)
    texts, labels = corpus(600, seed=0)
    batch = {name: torch.from_numpy(array) for name, array in encode(tokenizer_path, texts).items()}
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(100):
        optimiser.zero_grad()
        loss = nn.functional.cross_entropy(model(**batch), torch.from_numpy(labels))
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
    return model.eval()
