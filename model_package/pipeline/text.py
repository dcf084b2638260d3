"""Text to token tensors with a Hugging Face ``tokenizers`` ``tokenizer.json`` bundled in the package.

A request's texts are padded together, to its longest text (or to the model's fixed sequence
length when the signature has one), and truncated at ``max_length``.

Texts go through ``Tokenizer.encode_batch``, which lets go of the interpreter lock while it works
(``encode`` holds it: one 5 MB text kept ``/ping`` and every other request waiting for 20 s), with
the library's own thread pool off (``TOKENIZERS_PARALLELISM=false``, unless set): it does not survive
the server's fork into workers, and the server already runs requests in parallel.

A long text is tokenized from its head: truncation keeps the first ``max_length`` tokens, yet the
tokenizer works through the whole text first (3 us a token: 5.5 MB of ``!`` took 20 s of CPU for 6
tokens kept). The head, ``_HEAD_CHARS_PER_TOKEN`` characters per token kept, doubled while too
short, gives the same tokens as the whole text as soon as the tokens kept all come from words
before the head's last one and end well before the cut (``_CUT_MARGIN`` characters, or the longest
added token's), with something other than whitespace between them and the cut (an added token with
``lstrip``, as RoBERTa's ``<mask>``, takes in all the whitespace before it). Tokenizers match added
tokens (``[MASK]``) first, then normalise and split text into words by rules that look a few
characters around them, and tokenize each word on its own, so only what lies near the cut can
differ. Only tokenizers built from such rules take the shortcut (``_LOCAL_PRE_TOKENIZERS``,
``_LOCAL_NORMALIZERS``; a regular expression of the user's, in a ``Split`` or ``Replace``, can span
any length: a quoted span closing past the cut, say): others, and those that do not split into words
at all, read the whole text, as before. Checked against whole-text tokenization on WordPiece (BERT's
normaliser), byte-level BPE and Unigram (Metaspace) tokenizers, with whitespace runs, combining
marks, CJK, emoji, added tokens, ``lstrip`` and contractions across the cut.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model_package.errors import IntegrityError, LoadError
from model_package.manifest import Signature
from model_package.pipeline.schema import TextInput

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

#: A long text's head holds this many characters per token kept (English averages about 4).
_HEAD_CHARS_PER_TOKEN = 32
#: The tokens kept from a head end at least this many characters before its cut (see above).
_CUT_MARGIN = 64
#: Pre-tokenizers whose splits depend on a few characters around them (``tokenizer.json`` types).
_LOCAL_PRE_TOKENIZERS = frozenset(
    {"BertPreTokenizer", "ByteLevel", "Whitespace", "WhitespaceSplit", "Metaspace", "Punctuation", "Digits",
     "UnicodeScripts", "CharDelimiterSplit"}
)  # fmt: skip
#: Normalizers that change a character by what lies a few characters around it, at most.
_LOCAL_NORMALIZERS = frozenset(
    {"BertNormalizer", "NFC", "NFD", "NFKC", "NFKD", "Lowercase", "StripAccents", "Strip", "Prepend",
     "Precompiled", "Nmt", "ByteLevel"}
)  # fmt: skip


class TextEncoder:
    """A loaded tokenizer and the model inputs its outputs feed."""

    def __init__(
        self, tokenizer_path: Path, spec: TextInput, signature: Signature, *, longest: int | None = None
    ) -> None:
        """``longest``: the most tokens the model takes (its table of positions, see ``AxisRules``)."""
        # Read by the library at each batch call (its warning on fork names this variable); an explicit
        # setting, either way, is the deployment's.
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
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
        self._cut_margin = _cut_margin(self._tokenizer)
        """How far before a head's cut its kept tokens must end; ``None``: read whole texts (see above)."""

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
        encodings = self._encode(list(texts))
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

    def _encode(self, texts: list[str]) -> list[Encoding]:
        """Each text's encoding, truncated at ``max_length``: from its head where that is the same (see above)."""
        margin = self._cut_margin
        if margin is None:
            return list(self._tokenizer.encode_batch(texts))
        encodings: list[Encoding | None] = [None] * len(texts)
        pending = list(range(len(texts)))
        head = self.max_length * _HEAD_CHARS_PER_TOKEN
        while pending:
            batch = [texts[index][:head] for index in pending]
            still: list[int] = []
            for index, encoding in zip(pending, self._tokenizer.encode_batch(batch), strict=True):
                text = texts[index]
                if len(text) <= head or _kept_tokens_precede_cut(encoding, text[:head], margin):
                    encodings[index] = encoding
                else:
                    still.append(index)
            pending, head = still, head * 2
        return [encoding for encoding in encodings if encoding is not None]


def _kept_tokens_precede_cut(encoding: Encoding, head: str, margin: int) -> bool:
    """Whether every token kept from ``head`` comes from a word before its last word, ends ``margin``
    characters or more before its end, and has something other than whitespace after it.

    The tokens cut off by truncation are in ``overflowing``; the last of them belongs to the last word.
    """
    if not encoding.overflowing:
        return False  # the head fit whole: its last word may be cut, and the text goes on past it
    kept = [(word, end) for word, (_, end) in zip(encoding.word_ids, encoding.offsets, strict=True) if word is not None]
    last = [word for word in encoding.overflowing[-1].word_ids if word is not None]
    if not kept or not last:
        return False
    end = max(end for _, end in kept)
    return max(word for word, _ in kept) < max(last) and end <= len(head) - margin and not head[end:].isspace()


def _cut_margin(tokenizer: Tokenizer) -> int | None:
    """How far before a head's cut its kept tokens must end for this tokenizer; ``None`` when its
    normalizer or pre-tokenizer may look further (a user's regular expression): whole texts, then."""
    config = json.loads(tokenizer.to_str())
    lengths = [_CUT_MARGIN, *(len(token.get("content", "")) + 1 for token in config.get("added_tokens") or ())]
    for component, local, children in (
        (config.get("normalizer"), _LOCAL_NORMALIZERS, "normalizers"),
        (config.get("pre_tokenizer"), _LOCAL_PRE_TOKENIZERS, "pretokenizers"),
    ):
        stack = [component] if component else []
        while stack:
            step = stack.pop()
            kind = step.get("type")
            if kind == "Sequence":
                stack.extend(step.get(children) or ())
            elif kind in ("Replace", "Split") and set(step.get("pattern") or {}) == {"String"}:
                lengths.append(len(step["pattern"]["String"]) + 1)  # a literal: as long as it is
            elif kind not in local:
                return None
    return max(lengths)
