"""What the two DistilBERT tokenizers share: call arguments, padding and truncation rules, the
``BatchEncoding`` output, tensor conversion and the tokenizer files on disk.

The rules mirror transformers 4.57.6 (our reference oracle) so that code written against
``transformers.DistilBertTokenizer(Fast)`` gets the same ids, masks and files from ours.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)

VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"

# transformers writes int(1e30) as the model_max_length of a tokenizer that has none; anything above
# 1e20 means "no limit": truncation and max_length padding are then switched off.
VERY_LARGE_INTEGER = int(1e30)
LARGE_INTEGER = int(1e20)

# The order in which transformers lists special tokens (all_special_tokens, all_special_ids).
SPECIAL_TOKEN_ROLES = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}

PADDING_STRATEGIES = ("longest", "max_length", "do_not_pad")
TRUNCATION_STRATEGIES = ("longest_first", "only_first", "only_second", "do_not_truncate")
TENSOR_TYPES = ("np", "pt", "tf", "jax")


# --------------------------------------------------------------------------------------- output
class BatchEncoding(dict):
    """A tokenizer's output: a dict of ``input_ids``, ``attention_mask``, ... that also allows attribute
    access (``enc.input_ids``).

    Output of :class:`DistilBertTokenizerFast` also keeps the ``tokenizers`` encodings, so it can map
    tokens back to words and characters (:meth:`word_ids`, :meth:`sequence_ids`, :meth:`char_to_token`,
    :meth:`token_to_chars`, :meth:`tokens`); ``enc[i]`` is then the ``i``-th ``tokenizers.Encoding``.

    Args:
        data: the arrays, keyed by name.
        encodings: one ``tokenizers.Encoding`` per row (fast tokenizer only).
        tensor_type: convert the values to ``"np"``, ``"pt"``, ``"tf"`` or ``"jax"`` tensors.
        prepend_batch_axis: wrap each value in a batch of one before converting.

    Example:
        >>> enc = BatchEncoding({"input_ids": [[101, 102]], "attention_mask": [[1, 1]]}, tensor_type="np")
        >>> enc.input_ids.shape
        (1, 2)
    """

    def __init__(
        self,
        data: dict[str, Any] | None = None,
        encodings: list | None = None,
        tensor_type: str | None = None,
        prepend_batch_axis: bool = False,
    ):
        super().__init__(data or {})
        self._encodings = encodings
        if tensor_type is not None:
            self.convert_to_tensors(tensor_type, prepend_batch_axis)

    def __getattr__(self, name: str):
        if name.startswith("__"):  # keep copy/pickle protocol lookups off the dict's keys
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"BatchEncoding has no key or attribute {name!r}; keys: {list(self)}") from None

    def __getitem__(self, key):
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        if isinstance(key, int) and self._encodings is not None:
            return self._encodings[key]
        if isinstance(key, slice):
            return {name: value[key] for name, value in self.items()}
        raise KeyError(
            f"BatchEncoding keys are strings (e.g. 'input_ids'), slices, or row numbers on fast-tokenizer "
            f"output; got {key!r}"
        )

    def __getstate__(self) -> dict:
        return {"data": dict(self), "encodings": self._encodings}

    def __setstate__(self, state: dict) -> None:
        dict.update(self, state["data"])
        self._encodings = state["encodings"]

    def __reduce__(self):
        return (type(self), (), self.__getstate__())

    @property
    def encodings(self) -> list | None:
        """The ``tokenizers.Encoding`` of each row, or ``None`` for the pure-Python tokenizer."""
        return self._encodings

    @property
    def is_fast(self) -> bool:
        return self._encodings is not None

    def _encoding(self, batch_index: int):
        if self._encodings is None:
            raise ValueError(
                "token-to-word and token-to-character mappings need DistilBertTokenizerFast output; "
                "the pure-Python DistilBertTokenizer does not track them"
            )
        return self._encodings[batch_index]

    def tokens(self, batch_index: int = 0) -> list[str]:
        """The token strings of row ``batch_index``."""
        return self._encoding(batch_index).tokens

    def word_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token of row ``batch_index``, the index of the word it comes from (``None`` for special
        and padding tokens). Words are those of the input when ``is_split_into_words=True``."""
        return self._encoding(batch_index).word_ids

    def sequence_ids(self, batch_index: int = 0) -> list[int | None]:
        """For each token, 0 (first text), 1 (second text of a pair) or ``None`` (special, padding)."""
        return self._encoding(batch_index).sequence_ids

    def char_to_token(
        self, batch_or_char_index: int, char_index: int | None = None, sequence_index: int = 0
    ) -> int | None:
        """The token holding a character: ``char_to_token(char)`` for row 0, ``char_to_token(row, char)``
        otherwise; ``sequence_index`` picks the text of a pair. ``None`` for whitespace."""
        if char_index is None:
            batch_index, char_index = 0, batch_or_char_index
        else:
            batch_index = batch_or_char_index
        return self._encoding(batch_index).char_to_token(char_index, sequence_index)

    def token_to_chars(self, batch_or_token_index: int, token_index: int | None = None) -> tuple[int, int] | None:
        """The ``(start, end)`` character span of a token in its text; ``None`` for special tokens."""
        if token_index is None:
            batch_index, token_index = 0, batch_or_token_index
        else:
            batch_index = batch_or_token_index
        return self._encoding(batch_index).token_to_chars(token_index)

    def convert_to_tensors(self, tensor_type: str, prepend_batch_axis: bool = False) -> BatchEncoding:
        """Converts every value in place to ``tensor_type`` tensors (the framework is imported now)."""
        convert = tensor_converter(tensor_type)
        for key, value in self.items():
            if prepend_batch_axis:
                value = [value]
            try:
                self[key] = convert(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(
                    f"cannot make a {tensor_type!r} tensor of {key!r}: its rows have different lengths. "
                    "Pass padding=True (and truncation=True for long texts) to get equal lengths."
                ) from exc
        return self

    def to(self, device) -> BatchEncoding:
        """Moves every PyTorch tensor to ``device`` (``"cuda"``, ``torch.device``, ...); returns ``self``."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


def _is_empty(value) -> bool:
    """True when a nested list holds no scalar at all (``[]``, ``[[], []]``)."""
    if isinstance(value, (list, tuple)):
        return all(_is_empty(v) for v in value)
    return False


def tensor_converter(tensor_type):
    """A function turning nested lists into tensors of ``tensor_type``; imports only that framework.

    Dtypes follow the reference: int64 for numpy and PyTorch, the framework default (int32) for
    TensorFlow and JAX.
    """
    name = getattr(tensor_type, "value", tensor_type)  # accepts transformers' TensorType too
    if name == "np":
        import numpy as np

        return lambda value: np.asarray(value, dtype=np.int64 if _is_empty(value) else None)
    if name == "pt":
        import torch

        return lambda value: torch.tensor(value, dtype=torch.int64 if _is_empty(value) else None)
    if name == "tf":
        import tensorflow as tf

        return lambda value: tf.constant(value, dtype=tf.int32 if _is_empty(value) else None)
    if name == "jax":
        import jax.numpy as jnp

        return lambda value: jnp.array(value, dtype=jnp.int32 if _is_empty(value) else None)
    raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {tensor_type!r}")


# ----------------------------------------------------------------------------------- arguments
@dataclass(frozen=True)
class EncodeOptions:
    """The resolved arguments of one tokenizer call."""

    add_special_tokens: bool
    padding: str  # one of PADDING_STRATEGIES
    truncation: str  # one of TRUNCATION_STRATEGIES
    max_length: int | None
    stride: int
    is_split_into_words: bool
    pad_to_multiple_of: int | None
    padding_side: str
    return_tensors: str | None
    return_token_type_ids: bool
    return_attention_mask: bool
    return_overflowing_tokens: bool
    return_special_tokens_mask: bool
    return_offsets_mapping: bool
    return_length: bool


def _check_int(name: str, value, minimum: int, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")


def _strategy(value, choices: Sequence[str], what: str) -> str:
    name = getattr(value, "value", value)  # accepts transformers' PaddingStrategy / TruncationStrategy
    if name not in choices:
        raise ValueError(f"{what} must be True, False or one of {list(choices)}, got {value!r}")
    return name


def resolve_padding_truncation(padding, truncation, max_length, pad_to_multiple_of, model_max_length):
    """Turns the user's ``padding``/``truncation``/``max_length`` into strategies, as transformers does.

    - ``max_length`` alone (no padding, ``truncation=None``) means ``truncation="longest_first"``;
    - ``padding=True`` is ``"longest"`` and ignores ``max_length``;
    - a missing ``max_length`` is ``model_max_length``, unless that is "unlimited" (> 1e20), in which case
      truncation and ``"max_length"`` padding are switched off.

    Returns:
        ``(padding_strategy, truncation_strategy, max_length)``.
    """
    _check_int("max_length", max_length, 1)
    _check_int("pad_to_multiple_of", pad_to_multiple_of, 1)
    if max_length is not None and padding is False and truncation is None:
        truncation = "longest_first"
    if padding is True:
        padding = "longest"
    elif padding is False or padding is None:
        padding = "do_not_pad"
    else:
        padding = _strategy(padding, PADDING_STRATEGIES, "padding")
    if truncation is True:
        truncation = "longest_first"
    elif truncation is False or truncation is None:
        truncation = "do_not_truncate"
    else:
        truncation = _strategy(truncation, TRUNCATION_STRATEGIES, "truncation")
    if max_length is None:
        unlimited = model_max_length > LARGE_INTEGER
        if padding == "max_length":
            if unlimited:
                logger.warning(
                    "padding='max_length' without max_length on a tokenizer with no model_max_length: not padding"
                )
                padding = "do_not_pad"
            else:
                max_length = model_max_length
        if truncation != "do_not_truncate":
            if unlimited:
                logger.warning("truncation without max_length on a tokenizer with no model_max_length: not truncating")
                truncation = "do_not_truncate"
            else:
                max_length = model_max_length
    if (
        truncation != "do_not_truncate"
        and padding != "do_not_pad"
        and pad_to_multiple_of is not None
        and max_length is not None
        and max_length % pad_to_multiple_of != 0
    ):
        raise ValueError(
            f"truncation length max_length={max_length} is not a multiple of pad_to_multiple_of={pad_to_multiple_of}"
        )
    return padding, truncation, max_length


def _describe(value) -> str:
    return f"{type(value).__name__} {value!r}" if not isinstance(value, (list, tuple)) else type(value).__name__


def _check_words(words, what: str) -> None:
    if not isinstance(words, (list, tuple)):
        raise TypeError(f"{what} must be a list of word strings (is_split_into_words=True), got {_describe(words)}")
    for i, word in enumerate(words):
        if not isinstance(word, str):
            raise TypeError(f"{what}[{i}] must be a str, got {_describe(word)}")


def check_text_input(text, text_pair, is_split_into_words: bool) -> bool:
    """Validates a call's text arguments and tells whether they are a batch.

    Accepted: a ``str``; a list/tuple of ``str`` (a batch); with ``is_split_into_words=True``, a list of
    words (one text) or a list of lists of words (a batch). ``text_pair`` has the same shape as ``text``.

    Raises:
        TypeError: anything else (``None``, numbers, bytes, lists of ids, ...), naming what was found.
        ValueError: an empty batch, or ``text`` and ``text_pair`` batches of different lengths.
    """
    if is_split_into_words:
        if isinstance(text, str):
            raise TypeError("is_split_into_words=True needs a list of words (or a list of such lists), got a str")
        _check_sequence(text, "text")
        batched = len(text) > 0 and isinstance(text[0], (list, tuple))
        rows = text if batched else [text]
        for i, row in enumerate(rows):
            _check_words(row, f"text[{i}]" if batched else "text")
    elif isinstance(text, str):
        batched = False
    else:
        _check_sequence(text, "text")
        batched = True
        for i, item in enumerate(text):
            if isinstance(item, (list, tuple)):
                raise TypeError(
                    f"text[{i}] is a {type(item).__name__}: for pre-split words pass is_split_into_words=True, "
                    "for pairs pass the second texts as text_pair"
                )
            if not isinstance(item, str):
                raise TypeError(f"text[{i}] must be a str, got {_describe(item)}")
    if batched and len(text) == 0:
        raise ValueError("text is an empty batch; pass at least one text")
    if text_pair is None:
        return batched
    if batched:
        _check_sequence(text_pair, "text_pair")
        if len(text_pair) != len(text):
            raise ValueError(f"text has {len(text)} items but text_pair has {len(text_pair)}; they must match")
        for i, item in enumerate(text_pair):
            if is_split_into_words:
                _check_words(item, f"text_pair[{i}]")
            elif not isinstance(item, str):
                raise TypeError(f"text_pair[{i}] must be a str, got {_describe(item)}")
    elif is_split_into_words:
        _check_words(text_pair, "text_pair")
    elif not isinstance(text_pair, str):
        raise TypeError(f"text is a single str, so text_pair must be a str too, got {_describe(text_pair)}")
    return batched


def _check_sequence(value, what: str) -> None:
    if not isinstance(value, (list, tuple)):
        raise TypeError(
            f"{what} must be a str, a list of str (a batch), or with is_split_into_words=True a list of words; "
            f"got {_describe(value)}"
        )


def token_ids_list(token_ids) -> list[int]:
    """Token ids given as an int, a list/tuple, or a 1-D numpy/PyTorch/TF/JAX array, as a list of ints."""
    if hasattr(token_ids, "tolist"):  # numpy, torch, jax arrays
        token_ids = token_ids.tolist()
    elif hasattr(token_ids, "numpy"):  # tf.Tensor
        token_ids = token_ids.numpy().tolist()
    if isinstance(token_ids, int) and not isinstance(token_ids, bool):
        return [token_ids]
    if not isinstance(token_ids, (list, tuple)):
        raise TypeError(f"token ids must be an int or a sequence of ints, got {_describe(token_ids)}")
    for i, index in enumerate(token_ids):
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"token ids must be ints; item {i} is {_describe(index)}")
    return list(token_ids)


def token_id_rows(sequences) -> list[list[int]]:
    """A batch of token-id sequences (list of lists, or a 2-D array) as lists of ints."""
    if hasattr(sequences, "tolist"):
        sequences = sequences.tolist()
    elif hasattr(sequences, "numpy"):
        sequences = sequences.numpy().tolist()
    if not isinstance(sequences, (list, tuple)):
        raise TypeError(f"batch_decode needs a sequence of token-id sequences, got {_describe(sequences)}")
    return [token_ids_list(row) for row in sequences]


def clean_up_tokenization(text: str) -> str:
    """Removes the space decoding leaves before punctuation and English contractions (``"isn ' t"`` stays,
    ``"do n't"`` becomes ``"don't"``), as transformers does."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


# ---------------------------------------------------------------------------------------- files
def token_content(value, where: str) -> str:
    """A special token as a string; configs store either ``"[CLS]"`` or ``{"content": "[CLS]", ...}``."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    raise ValueError(f"{where}: a special token must be a string or an object with 'content', got {value!r}")


def read_json(path: str) -> dict:
    """Reads a JSON object file; a clear error naming the file if it is not one."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path!r} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path!r} must hold a JSON object, got {type(data).__name__}")
    return data


def resolve_directory(name_or_path) -> str:
    """A local directory for ``name_or_path``: the directory itself, or a hub id through
    :func:`distilbert.common.hub.resolve_dir`."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"from_pretrained needs a directory path or hub id, got {_describe(name_or_path)}")
    from distilbert.common.hub import resolve_dir

    return resolve_dir(name_or_path)


def read_pretrained_config(directory: str) -> dict[str, Any]:
    """Constructor arguments stored in a tokenizer directory (``tokenizer_config.json`` and, for older
    directories without ``added_tokens_decoder``, ``special_tokens_map.json``), as transformers reads them.

    Raises:
        ValueError: a malformed file, or added tokens beyond the five special tokens (not supported).
    """
    config_path = os.path.join(directory, CONFIG_FILE)
    config = read_json(config_path) if os.path.isfile(config_path) else {}
    kwargs: dict[str, Any] = {}
    for key in (
        "do_lower_case",
        "do_basic_tokenize",
        "never_split",
        "tokenize_chinese_chars",
        "strip_accents",
        "model_max_length",
        "clean_up_tokenization_spaces",
        "padding_side",
        "truncation_side",
    ):
        if key in config:
            kwargs[key] = config[key]
    for role in SPECIAL_TOKEN_ROLES:
        if role in config:
            kwargs[role] = token_content(config[role], f"{config_path} {role}")
    if config.get("additional_special_tokens"):
        raise ValueError(
            f"{config_path} lists additional_special_tokens {config['additional_special_tokens']}; "
            "only the five BERT special tokens are supported"
        )
    if "added_tokens_decoder" in config:
        specials = {kwargs.get(role, DEFAULT_SPECIAL_TOKENS[role]) for role in SPECIAL_TOKEN_ROLES}
        extra = [
            token_content(entry, f"{config_path} added_tokens_decoder")
            for entry in config["added_tokens_decoder"].values()
        ]
        extra = [token for token in extra if token not in specials]
        if extra:
            raise ValueError(
                f"{config_path} adds tokens {extra} beyond the special tokens; added tokens are not supported"
            )
    else:
        # Older directories keep the special tokens in special_tokens_map.json, which then wins.
        map_path = os.path.join(directory, SPECIAL_TOKENS_MAP_FILE)
        if os.path.isfile(map_path):
            for role, value in read_json(map_path).items():
                if role in SPECIAL_TOKEN_ROLES:
                    kwargs[role] = token_content(value, f"{map_path} {role}")
    tokenizer_class = config.get("tokenizer_class")
    if tokenizer_class and tokenizer_class.replace("Fast", "") not in ("BertTokenizer", "DistilBertTokenizer"):
        logger.warning(
            "%s names tokenizer_class %s; reading it as a DistilBERT WordPiece tokenizer", config_path, tokenizer_class
        )
    return kwargs


def write_text(path: str, text: str) -> None:
    """Writes UTF-8 text through a temporary file renamed into place."""
    from distilbert.common.files import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


# -------------------------------------------------------------------------------- tokenizer base
class TokenizerBase:
    """Special tokens, argument handling, decoding and saving shared by both tokenizers.

    Subclasses provide ``_token_to_id``, ``_encode(texts, pairs, batched, options)``, ``_decode_ids``,
    ``convert_ids_to_tokens``, ``tokenize``, ``get_vocab``, ``vocab_size`` and ``_save_vocab_files``.
    """

    model_input_names = ["input_ids", "attention_mask"]
    pad_token_type_id = 0

    # What each tokenizer implements (declared here so that the shared code type-checks).
    def _token_to_id(self, token: str) -> int | None:
        raise NotImplementedError

    def _encode(self, texts: list, pairs: list | None, batched: bool, options: EncodeOptions) -> BatchEncoding:
        raise NotImplementedError

    def _decode_ids(self, ids: list[int], skip_special_tokens: bool) -> str:
        raise NotImplementedError

    def _save_vocab_files(self, directory: str) -> tuple[str, ...]:
        raise NotImplementedError

    def get_vocab(self) -> dict[str, int]:
        raise NotImplementedError

    def _init_common(
        self,
        special_tokens: dict[str, str],
        do_lower_case: bool,
        tokenize_chinese_chars: bool,
        strip_accents: bool | None,
        model_max_length: int,
        padding_side: str,
        truncation_side: str,
        clean_up_tokenization_spaces: bool,
        where: str,
    ) -> None:
        for role, token in special_tokens.items():
            if not isinstance(token, str) or not token:
                raise TypeError(f"{role} must be a non-empty str, got {token!r}")
        missing = [token for token in special_tokens.values() if self._token_to_id(token) is None]
        if missing:
            raise ValueError(f"the vocabulary of {where} lacks the special tokens {missing}; add them to it")
        _check_int("model_max_length", model_max_length, 1, allow_none=False)
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("left", "right"):
                raise ValueError(f"{name} must be 'left' or 'right', got {side!r}")
        self.unk_token = special_tokens["unk_token"]
        self.sep_token = special_tokens["sep_token"]
        self.pad_token = special_tokens["pad_token"]
        self.cls_token = special_tokens["cls_token"]
        self.mask_token = special_tokens["mask_token"]
        special_ids = {token: self._token_to_id(token) for token in special_tokens.values()}
        ids: dict[str, int] = {t: i for t, i in special_ids.items() if i is not None}  # all of them: checked above
        self.unk_token_id = ids[self.unk_token]
        self.sep_token_id = ids[self.sep_token]
        self.pad_token_id = ids[self.pad_token]
        self.cls_token_id = ids[self.cls_token]
        self.mask_token_id = ids[self.mask_token]
        self.all_special_tokens = list(dict.fromkeys(special_tokens[role] for role in SPECIAL_TOKEN_ROLES))
        self.all_special_ids = [ids[token] for token in self.all_special_tokens]
        self._special_id_set = frozenset(self.all_special_ids)
        self.do_lower_case = bool(do_lower_case)
        self.tokenize_chinese_chars = bool(tokenize_chinese_chars)
        self.strip_accents = strip_accents
        self.model_max_length = model_max_length
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.clean_up_tokenization_spaces = bool(clean_up_tokenization_spaces)
        self.name_or_path = ""

    # ------------------------------------------------------------------ special tokens and vocab
    @property
    def special_tokens_map(self) -> dict[str, str]:
        return {role: getattr(self, role) for role in SPECIAL_TOKEN_ROLES}

    def __len__(self) -> int:
        return len(self.get_vocab())

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        """2 for one text (``[CLS] A [SEP]``), 3 for a pair (``[CLS] A [SEP] B [SEP]``)."""
        return 3 if pair else 2

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None):
        """``[CLS] A [SEP]`` or ``[CLS] A [SEP] B [SEP]``."""
        if token_ids_1 is None:
            return [self.cls_token_id, *token_ids_0, self.sep_token_id]
        return [self.cls_token_id, *token_ids_0, self.sep_token_id, *token_ids_1, self.sep_token_id]

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]) -> int | list[int]:
        """Id of a token (or list of ids of a list of tokens); unknown tokens get ``unk_token_id``."""
        if isinstance(tokens, str):
            return self._id_of(tokens)
        return [self._id_of(_require_str(token)) for token in tokens]

    def _id_of(self, token: str) -> int:
        token_id = self._token_to_id(token)
        return self.unk_token_id if token_id is None else token_id

    # ---------------------------------------------------------------------------------- encoding
    def __call__(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: str | None = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_offsets_mapping: bool = False,
        return_length: bool = False,
        verbose: bool = True,
    ) -> BatchEncoding:
        """Tokenizes one text, a pair, or a batch of either, into model inputs.

        Args:
            text: a ``str``, a list of ``str`` (a batch), or with ``is_split_into_words=True`` a list of
                words or a batch of such lists.
            text_pair: second texts, same shape as ``text``: gives ``[CLS] A [SEP] B [SEP]``.
            add_special_tokens: add ``[CLS]``/``[SEP]``.
            padding: ``True``/``"longest"`` (to the longest in the batch), ``"max_length"`` (to
                ``max_length``, default ``model_max_length``), or ``False``.
            truncation: ``True``/``"longest_first"``, ``"only_first"``, ``"only_second"`` or ``False``.
            max_length: length limit for truncation and ``"max_length"`` padding.
            stride: with ``return_overflowing_tokens``, how many tokens consecutive windows share.
            is_split_into_words: the texts are lists of words.
            pad_to_multiple_of: round padded lengths up to a multiple of this.
            padding_side: ``"right"`` or ``"left"``; default ``self.padding_side``.
            return_tensors: ``"np"``, ``"pt"``, ``"tf"`` or ``"jax"`` for tensors (batch axis always
                present), ``None`` for Python lists.
            return_token_type_ids: also return ``token_type_ids`` (DistilBERT itself does not use them).
            return_attention_mask: return ``attention_mask`` (default ``True``).
            return_overflowing_tokens: keep what truncation cut off (see the class docs).
            return_special_tokens_mask: return ``special_tokens_mask`` (1 on special tokens).
            return_offsets_mapping: return each token's ``(start, end)`` characters (fast tokenizer only).
            return_length: return ``length``.
            verbose: kept for call compatibility with transformers.

        Returns:
            A :class:`BatchEncoding`; flat lists for one text, lists of lists for a batch.

        Raises:
            TypeError: ``text`` or ``text_pair`` is not text (a number, ``None``, a list of ids, ...).
            ValueError: an invalid option value.
        """
        batched = check_text_input(text, text_pair, is_split_into_words)
        _check_int("stride", stride, 0, allow_none=False)
        padding, truncation, max_length = resolve_padding_truncation(
            padding, truncation, max_length, pad_to_multiple_of, self.model_max_length
        )
        if padding_side is None:
            padding_side = self.padding_side
        elif padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        if return_tensors is not None and getattr(return_tensors, "value", return_tensors) not in TENSOR_TYPES:
            raise ValueError(f"return_tensors must be one of {TENSOR_TYPES} or None, got {return_tensors!r}")
        options = EncodeOptions(
            add_special_tokens=bool(add_special_tokens),
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            is_split_into_words=bool(is_split_into_words),
            pad_to_multiple_of=pad_to_multiple_of,
            padding_side=padding_side,
            return_tensors=getattr(return_tensors, "value", return_tensors),
            return_token_type_ids=bool(return_token_type_ids),
            return_attention_mask=True if return_attention_mask is None else bool(return_attention_mask),
            return_overflowing_tokens=bool(return_overflowing_tokens),
            return_special_tokens_mask=bool(return_special_tokens_mask),
            return_offsets_mapping=bool(return_offsets_mapping),
            return_length=bool(return_length),
        )
        if batched:
            return self._encode(list(text), None if text_pair is None else list(text_pair), True, options)
        return self._encode([text], None if text_pair is None else [text_pair], False, options)

    def encode(
        self,
        text,
        text_pair=None,
        add_special_tokens: bool = True,
        padding=False,
        truncation=None,
        max_length: int | None = None,
        stride: int = 0,
        return_tensors: str | None = None,
    ):
        """The ``input_ids`` of one text (or pair): ``tok.encode("hi")`` -> ``[101, 7632, 102]``."""
        if not isinstance(text, str):
            raise TypeError(f"encode takes one str (use tok(list_of_texts) for batches), got {_describe(text)}")
        return self(
            text,
            text_pair,
            add_special_tokens=add_special_tokens,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            stride=stride,
            return_tensors=return_tensors,
        )["input_ids"]

    # ---------------------------------------------------------------------------------- decoding
    def decode(
        self,
        token_ids,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        """Text of a sequence of ids: WordPiece ``##`` pieces are glued back onto their word.

        Args:
            token_ids: an int, a list of ints, or a 1-D array/tensor.
            skip_special_tokens: leave out ``[CLS]``, ``[SEP]``, ``[PAD]``, ...
            clean_up_tokenization_spaces: remove spaces before punctuation and contractions; default
                ``self.clean_up_tokenization_spaces``.
        """
        text = self._decode_ids(token_ids_list(token_ids), skip_special_tokens)
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        return clean_up_tokenization(text) if clean_up_tokenization_spaces else text

    def batch_decode(
        self,
        sequences,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> list[str]:
        """:meth:`decode` of each row of a batch (list of lists, or a 2-D array/tensor)."""
        return [self.decode(row, skip_special_tokens, clean_up_tokenization_spaces) for row in token_id_rows(sequences)]

    # ---------------------------------------------------------------------------------- padding
    def _pad_row(self, row: dict[str, list], length: int, side: str) -> None:
        """Pads one row's lists in place to ``length`` with ``[PAD]``, mask 0, type 0, special mask 1."""
        missing = length - len(row["input_ids"])
        if missing <= 0:
            return
        fill = {
            "input_ids": self.pad_token_id,
            "attention_mask": 0,
            "token_type_ids": self.pad_token_type_id,
            "special_tokens_mask": 1,
        }
        for key, value in fill.items():
            if key in row:
                row[key] = row[key] + [value] * missing if side == "right" else [value] * missing + row[key]

    # ---------------------------------------------------------------------------------- saving
    def _config_for_saving(self) -> dict[str, Any]:
        """``tokenizer_config.json`` as transformers 4.57.6 writes it for DistilBERT."""
        added = {
            str(token_id): {
                "content": token,
                "lstrip": False,
                "normalized": False,
                "rstrip": False,
                "single_word": False,
                "special": True,
            }
            for token_id, token in sorted(zip(self.all_special_ids, self.all_special_tokens))
        }
        return {
            "added_tokens_decoder": added,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "do_basic_tokenize": True,
            "do_lower_case": self.do_lower_case,
            "extra_special_tokens": {},
            "model_max_length": self.model_max_length,
            "never_split": None,
            "padding_side": self.padding_side,
            "strip_accents": self.strip_accents,
            "tokenize_chinese_chars": self.tokenize_chinese_chars,
            "tokenizer_class": "DistilBertTokenizer",
            "truncation_side": self.truncation_side,
            **self.special_tokens_map,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> tuple[str, ...]:
        """Writes the tokenizer files (``tokenizer_config.json``, ``special_tokens_map.json``,
        ``vocab.txt``, and ``tokenizer.json`` for the fast tokenizer) that both this package and
        transformers' ``from_pretrained`` read.

        Returns:
            The paths written.
        """
        directory = os.fspath(save_directory)
        if os.path.isfile(directory):
            raise NotADirectoryError(f"save_pretrained needs a directory, but {directory!r} is a file")
        os.makedirs(directory, exist_ok=True)
        config_path = os.path.join(directory, CONFIG_FILE)
        map_path = os.path.join(directory, SPECIAL_TOKENS_MAP_FILE)
        write_json(config_path, self._config_for_saving())
        write_json(map_path, self.special_tokens_map)
        return (config_path, map_path, *self._save_vocab_files(directory))

    @staticmethod
    def _write_vocab(path: str, token_ids: dict[str, int]) -> None:
        """``vocab.txt``: tokens in id order, one a line."""
        tokens = sorted(token_ids.items(), key=lambda item: item[1])
        if any(index != token_id for index, (_, token_id) in enumerate(tokens)):
            logger.warning("vocabulary ids are not consecutive; %s will renumber them", path)
        write_text(path, "".join(token + "\n" for token, _ in tokens))


def _require_str(token) -> str:
    if not isinstance(token, str):
        raise TypeError(f"tokens must be str, got {_describe(token)}")
    return token
