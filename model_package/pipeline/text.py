"""Text to token tensors with a Hugging Face ``tokenizers`` ``tokenizer.json`` bundled in the package.

Texts are encoded one at a time (``Tokenizer.encode``, not ``encode_batch``): the batch version runs
on the library's own thread pool, which does not survive the server's fork into workers, and the
server already runs requests in parallel. A request's texts are padded together, to its longest
text (or to the model's fixed sequence length when the signature has one), and truncated at
``max_length``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_package.errors import IntegrityError, LoadError
from model_package.manifest import Signature
from model_package.pipeline.schema import TextInput

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class TextEncoder:
    """A loaded tokenizer and the model inputs its outputs feed."""

    def __init__(
        self, tokenizer_path: Path, spec: TextInput, signature: Signature, *, longest: int | None = None
    ) -> None:
        """``longest``: the most tokens the model takes (its table of positions, see ``AxisRules``)."""
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:  # pragma: no cover - tokenizers is part of the serve extra
            raise LoadError("text pipelines need tokenizers: pip install 'model-deploy[serve]'") from exc
        try:
            self._tokenizer: Tokenizer = Tokenizer.from_file(str(tokenizer_path))
        except Exception as exc:  # the Rust side raises plain Exception for a malformed file
            raise IntegrityError(f"{tokenizer_path.name} is not a readable tokenizers file: {exc}") from exc
        self.spec = spec
        shapes = {item.name: item for item in signature.inputs}
        ids_spec = shapes[spec.input_ids]
        fixed = ids_spec.shape[1] if len(ids_spec.shape) > 1 and ids_spec.shape[1] != -1 else None
        self.fixed_length = fixed
        # Never past what the model takes: a text of more tokens than its positions would be refused
        # (or, unchecked, fail inside the model), where truncating it is what max_length promises.
        self.max_length = min(length for length in (spec.max_length, fixed, longest) if length is not None)
        self.dtypes = {item.name: np.dtype(item.dtype) for item in signature.inputs}
        self.pad_id = self._pad_id()
        # Set once at load and never changed: the tokenizer is shared by every request thread.
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(self.max_length)

    def _pad_id(self) -> int:
        padding = self._tokenizer.padding
        if padding is not None:
            return int(padding["pad_id"])
        for token in ("[PAD]", "<pad>", "<PAD>"):
            found = self._tokenizer.token_to_id(token)
            if found is not None:
                return int(found)
        return 0

    def encode(
        self, texts: Sequence[str], check_size: Callable[[int, int], None] | None = None
    ) -> dict[str, np.ndarray]:
        """The model inputs for ``texts``: ids, attention mask and token types as the spec names them.

        ``check_size(bytes, rows)`` may refuse the padded arrays before they are allocated.
        """
        encodings = [self._tokenizer.encode(text) for text in texts]
        lengths = [min(len(encoding.ids), self.max_length) for encoding in encodings]
        width = self.fixed_length if self.fixed_length is not None else max(1, *lengths)
        if check_size is not None:
            check_size(3 * 8 * len(texts) * width, len(texts))
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        types = np.zeros((len(texts), width), dtype=np.int64)
        for row, (encoding, length) in enumerate(zip(encodings, lengths, strict=True)):
            ids[row, :length] = encoding.ids[:length]
            mask[row, :length] = 1
            types[row, :length] = encoding.type_ids[:length]
        named = {self.spec.input_ids: ids}
        if self.spec.attention_mask is not None:
            named[self.spec.attention_mask] = mask
        if self.spec.token_type_ids is not None:
            named[self.spec.token_type_ids] = types
        return {name: array.astype(self.dtypes[name], copy=False) for name, array in named.items()}
