"""The model's output tensors to answers: labels and scores, top-k items, or embeddings (one dict per row)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from model_package.errors import ModelExecutionError
from model_package.pipeline.schema import EmbeddingOutput, LabelsOutput, TextInput, TopKOutput


def answer_labels(scores: np.ndarray, spec: LabelsOutput, labels: Sequence[str] | None) -> list[dict[str, Any]]:
    """``{"labels": [...], "scores": [...]}`` per row, best first."""
    rows = _rows(scores, spec.output, rank=2).astype(np.float64)
    if spec.activation == "softmax":
        shifted = np.exp(rows - rows.max(axis=1, keepdims=True))
        rows = shifted / shifted.sum(axis=1, keepdims=True)
    elif spec.activation == "sigmoid":
        rows = 1.0 / (1.0 + np.exp(-rows))
    if labels is not None and len(labels) != rows.shape[1]:
        raise ModelExecutionError(
            f"output {spec.output!r} has {rows.shape[1]} classes but the package's labels file has {len(labels)}"
        )
    top = _top_k(rows, spec.top_k)
    answers = []
    for row, order in zip(rows, top, strict=True):
        names: list[Any] = [labels[i] for i in order] if labels is not None else [int(i) for i in order]
        answers.append({"labels": names, "scores": [float(row[i]) for i in order]})
    return answers


def answer_items(scores: np.ndarray, spec: TopKOutput, inputs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
    """``{"items": [...], "scores": [...]}`` per row: the best ``top_k`` candidates and their raw scores."""
    rows = _rows(scores, spec.output, rank=2)
    items = inputs[spec.items] if spec.items is not None else None
    if items is not None and items.reshape(items.shape[0], -1).shape != rows.shape:
        raise ModelExecutionError(
            f"output {spec.output!r} has shape {list(rows.shape)}, which does not match the candidates "
            f"{spec.items!r} {list(items.shape)}"
        )
    top = _top_k(rows, spec.top_k)
    answers = []
    for index, order in enumerate(top):
        chosen = items.reshape(items.shape[0], -1)[index, order] if items is not None else order
        answers.append({"items": [int(i) for i in chosen], "scores": [float(rows[index, i]) for i in order]})
    return answers


def answer_embeddings(
    states: np.ndarray, spec: EmbeddingOutput, inputs: Mapping[str, np.ndarray], text: TextInput | None
) -> list[dict[str, Any]]:
    """``{"embedding": [...]}`` per row: pooled over tokens as declared, L2-normalised unless told not to."""
    array = np.asarray(states, dtype=np.float64)
    if spec.pooling == "none":
        vectors = _rows(array, spec.output, rank=2)
    else:
        tokens = _rows(array, spec.output, rank=3)
        if spec.pooling == "cls":
            vectors = tokens[:, 0, :]
        else:
            mask_name = text.attention_mask if text is not None else None
            if mask_name is not None and mask_name in inputs:
                mask = inputs[mask_name].astype(np.float64)[:, : tokens.shape[1], None]
            else:
                mask = np.ones((*tokens.shape[:2], 1), dtype=np.float64)
            # sentence-transformers' mean pooling: padding tokens do not count, and an all-padding
            # row divides by a small epsilon instead of zero.
            vectors = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
    if spec.normalize:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.clip(norms, 1e-12, None)
    return [{"embedding": [float(value) for value in row]} for row in vectors]


def _rows(array: np.ndarray, name: str, *, rank: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != rank:
        raise ModelExecutionError(
            f"output {name!r} has shape {list(array.shape)}; this pipeline step needs rank {rank}"
        )
    return array


def _top_k(rows: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest values per row, best first (ties keep the lower index)."""
    k = min(k, rows.shape[1])
    return np.argsort(-rows, axis=1, kind="stable")[:, :k]
