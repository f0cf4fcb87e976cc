"""DistilBERT's two tokenizers, drop-in for transformers' ``DistilBertTokenizer`` and
``DistilBertTokenizerFast`` (same ids, masks, offsets, decoded text and files as transformers 4.57.6).

- :class:`DistilBertTokenizer` is pure Python (BERT basic tokenization + WordPiece, see
  :mod:`distilbert.common.tokenization_wordpiece`) and reads ``vocab.txt``.
- :class:`DistilBertTokenizerFast` runs on the Rust ``tokenizers`` library, reads ``tokenizer.json`` (or
  builds the same pipeline from ``vocab.txt``) and also gives character offsets and word ids, which
  token classification and question answering need.

Importing this module imports no ML framework; ``return_tensors`` imports the one asked for.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from distilbert.common.tokenization_base import (
    TOKENIZER_FILE,
    VOCAB_FILE,
    BatchEncoding,
    EncodeOptions,
    TokenizerBase,
    read_pretrained_config,
    resolve_directory,
    write_text,
)
from distilbert.common.tokenization_wordpiece import WordPieceSplitter, load_vocab, lowercase_chars

__all__ = ["BatchEncoding", "DistilBertTokenizer", "DistilBertTokenizerFast"]

logger = logging.getLogger(__name__)


def _special_tokens(unk_token, sep_token, pad_token, cls_token, mask_token) -> dict[str, str]:
    return {
        "unk_token": unk_token,
        "sep_token": sep_token,
        "pad_token": pad_token,
        "cls_token": cls_token,
        "mask_token": mask_token,
    }


def _alternation(tokens) -> re.Pattern:
    return re.compile("(" + "|".join(map(re.escape, tokens)) + ")")


class DistilBertTokenizer(TokenizerBase):
    """DistilBERT's WordPiece tokenizer in pure Python.

    Text is cleaned (control characters dropped, whitespace normalised), optionally lowercased and
    stripped of accents, split on whitespace, punctuation and around CJK ideographs, then cut into the
    longest vocabulary pieces (``unaffable`` -> ``un ##aff ##able``); words the vocabulary cannot cover,
    or longer than 100 characters, become ``[UNK]``. Special tokens written in the text (``[MASK]``) are
    kept whole. Calls return ``input_ids`` and ``attention_mask`` as :class:`BatchEncoding`.

    With ``return_overflowing_tokens=True`` this tokenizer behaves like transformers' Python tokenizer:
    each row gets ``overflowing_tokens`` (the ids truncation removed, plus ``stride`` ids of context) and
    ``num_truncated_tokens``. To get one row per window of a long context (question answering), use
    :class:`DistilBertTokenizerFast`.

    Args:
        vocab_file: path of ``vocab.txt`` (one token a line, id = line number).
        do_lower_case: lowercase the text (uncased checkpoints).
        do_basic_tokenize: clean, lowercase and split on punctuation before WordPiece; if False only split
            on whitespace.
        never_split: words never lowercased, split or broken into pieces.
        unk_token: token for what the vocabulary cannot cover.
        sep_token: separator ending each text.
        pad_token: padding token.
        cls_token: first token of every input.
        mask_token: masked-LM mask token.
        tokenize_chinese_chars: make each CJK ideograph its own word.
        strip_accents: remove accents; ``None`` means "when lowercasing".
        model_max_length: default ``max_length`` for truncation and ``"max_length"`` padding.
        padding_side: ``"right"`` or ``"left"``.
        truncation_side: ``"right"`` or ``"left"``.
        clean_up_tokenization_spaces: :meth:`decode` removes spaces before punctuation by default.

    Raises:
        FileNotFoundError: no file at ``vocab_file``.
        ValueError: an unreadable vocabulary, or one lacking a special token.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp(), "vocab.txt")
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "!", "##s"]
        >>> _ = path.write_text("\\n".join(vocab))
        >>> tok = DistilBertTokenizer(path)
        >>> tok("Hello worlds!")["input_ids"]
        [2, 5, 6, 8, 7, 3]
        >>> tok.decode([2, 5, 6, 8, 7, 3], skip_special_tokens=True)
        'hello worlds!'
    """

    def __init__(
        self,
        vocab_file: str | os.PathLike,
        do_lower_case: bool = True,
        do_basic_tokenize: bool = True,
        never_split=None,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        model_max_length: int = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool = True,
    ):
        if not isinstance(vocab_file, (str, os.PathLike)):
            raise TypeError(f"vocab_file must be a path to vocab.txt, got {type(vocab_file).__name__}")
        vocab_file = os.fspath(vocab_file)
        self.vocab = load_vocab(vocab_file)
        self.ids_to_tokens = {token_id: token for token, token_id in self.vocab.items()}
        special = _special_tokens(unk_token, sep_token, pad_token, cls_token, mask_token)
        self._init_common(
            special,
            do_lower_case,
            tokenize_chinese_chars,
            strip_accents,
            model_max_length,
            padding_side,
            truncation_side,
            clean_up_tokenization_spaces,
            where=repr(vocab_file),
        )
        self.do_basic_tokenize = bool(do_basic_tokenize)
        self.never_split = list(never_split) if never_split else None
        self._splitter = WordPieceSplitter(
            self.vocab,
            unk_token,
            do_lower_case=self.do_lower_case,
            strip_accents=strip_accents,
            tokenize_chinese_chars=self.tokenize_chinese_chars,
            never_split=self.never_split or (),
            protected=self.all_special_tokens,
            do_basic_tokenize=self.do_basic_tokenize,
        )
        # Special tokens written in the text stay whole. Before that, transformers lowercases everything
        # else one character at a time (which matters for Greek final sigma), and not at all without
        # basic tokenization.
        self._lowercase_first = self.do_lower_case and self.do_basic_tokenize
        self._lowercase_pattern = _alternation(self.all_special_tokens)
        self._special_pattern = _alternation(sorted(self.all_special_tokens, key=len, reverse=True))

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> DistilBertTokenizer:
        """Loads ``vocab.txt`` and ``tokenizer_config.json`` from a directory (ours or transformers'),
        or a hub id through :mod:`distilbert.common.hub`. ``kwargs`` override the stored settings.

        Raises:
            FileNotFoundError: the directory or its ``vocab.txt`` does not exist.
        """
        directory = resolve_directory(name_or_path)
        vocab_file = os.path.join(directory, VOCAB_FILE)
        if not os.path.isfile(vocab_file):
            raise FileNotFoundError(f"no {VOCAB_FILE} in {directory!r}; DistilBertTokenizer needs one")
        tokenizer = cls(vocab_file, **{**read_pretrained_config(directory), **kwargs})
        tokenizer.name_or_path = os.fspath(name_or_path)
        return tokenizer

    def __repr__(self) -> str:
        return (
            f"DistilBertTokenizer(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case})"
        )

    # ------------------------------------------------------------------------------- vocabulary
    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def _token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """Token of an id (or list of tokens of a list of ids); unknown ids give ``unk_token``."""
        if isinstance(ids, int):
            return self.ids_to_tokens.get(ids, self.unk_token)
        get = self.ids_to_tokens.get
        specials = self._special_id_set if skip_special_tokens else ()
        return [get(int(i), self.unk_token) for i in ids if int(i) not in specials]

    # ---------------------------------------------------------------------------------- tokenizing
    def _split_special(self, text: str) -> list[str]:
        """Alternating [text, special token, text, ...] pieces of ``text``."""
        if self._lowercase_first:
            parts = self._lowercase_pattern.split(text)
            if len(parts) == 1:
                text = lowercase_chars(text)
            else:
                text = "".join(part if i % 2 else lowercase_chars(part) for i, part in enumerate(parts))
        return self._special_pattern.split(text)

    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text``, without ``[CLS]``/``[SEP]``: ``"Hi!"`` -> ``['hi', '!']``."""
        if not isinstance(text, str):
            raise TypeError(f"tokenize takes a str, got {type(text).__name__}")
        tokens: list[str] = []
        for i, part in enumerate(self._split_special(text)):
            if i % 2:
                tokens.append(part)
            elif part:
                tokens.extend(self._splitter.tokenize(part))
        return tokens

    def _ids_of_text(self, text: str) -> list[int]:
        parts = self._split_special(text)
        if len(parts) == 1:
            return self._splitter.encode(parts[0])
        ids: list[int] = []
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(self.vocab[part])
            elif part:
                ids.extend(self._splitter.encode(part))
        return ids

    def _ids(self, text, is_split_into_words: bool) -> list[int]:
        if not is_split_into_words:
            return self._ids_of_text(text)
        ids: list[int] = []
        for word in text:
            ids.extend(self._ids_of_text(word))
        return ids

    # ---------------------------------------------------------------------------------- encoding
    def _encode(self, texts: list, pairs: list | None, batched: bool, options: EncodeOptions) -> BatchEncoding:
        if options.return_offsets_mapping:
            raise NotImplementedError(
                "return_offsets_mapping needs DistilBertTokenizerFast; the pure-Python tokenizer does not track offsets"
            )
        if options.return_token_type_ids and not options.add_special_tokens:
            raise ValueError("return_token_type_ids=True needs add_special_tokens=True")
        if options.return_overflowing_tokens and options.truncation == "longest_first" and pairs is not None:
            raise ValueError(
                "overflowing tokens cannot be returned for pairs truncated with 'longest_first'; "
                "use truncation='only_second' or 'only_first'"
            )
        split = options.is_split_into_words
        rows = [
            self._prepare_row(self._ids(text, split), None if pairs is None else self._ids(pairs[i], split), options)
            for i, text in enumerate(texts)
        ]
        if not batched:
            row = rows[0]
            if options.padding != "do_not_pad":
                length = options.max_length if options.padding == "max_length" else len(row["input_ids"])
                self._pad_row(row, _round_up(length, options.pad_to_multiple_of), options.padding_side)
            if options.return_length:
                row["length"] = len(row["input_ids"])
            return BatchEncoding(row, tensor_type=options.return_tensors, prepend_batch_axis=True)
        if options.return_length:  # in a batch, transformers reports the length before padding
            for row in rows:
                row["length"] = len(row["input_ids"])
        if options.padding != "do_not_pad":
            if options.padding == "max_length":
                length = options.max_length
            else:
                length = max(len(row["input_ids"]) for row in rows)
            length = _round_up(length, options.pad_to_multiple_of)
            for row in rows:
                self._pad_row(row, length, options.padding_side)
        data = {key: [row[key] for row in rows] for key in rows[0]}
        return BatchEncoding(data, tensor_type=options.return_tensors)

    def _prepare_row(self, ids: list[int], pair_ids: list[int] | None, options: EncodeOptions) -> dict[str, Any]:
        """Truncates, adds special tokens and builds the masks of one (unpadded) row."""
        n_special = (2 if pair_ids is None else 3) if options.add_special_tokens else 0
        total = len(ids) + (len(pair_ids) if pair_ids is not None else 0) + n_special
        max_length = options.max_length
        overflow: list[int] = []
        if options.truncation != "do_not_truncate" and max_length and total > max_length:
            ids, pair_ids, overflow = self._truncate(
                ids, pair_ids, total - max_length, options.truncation, options.stride
            )
        row: dict[str, Any] = {}
        if options.return_overflowing_tokens:
            row["overflowing_tokens"] = overflow
            row["num_truncated_tokens"] = total - max_length if max_length else 0
        if options.add_special_tokens:
            row["input_ids"] = self.build_inputs_with_special_tokens(ids, pair_ids)
        else:
            row["input_ids"] = ids + pair_ids if pair_ids is not None else list(ids)
        if options.return_token_type_ids:  # only allowed with special tokens
            second = len(pair_ids) + 1 if pair_ids is not None else 0
            row["token_type_ids"] = [0] * (len(ids) + 2) + [1] * second
        if options.return_special_tokens_mask:
            if not options.add_special_tokens:
                row["special_tokens_mask"] = [0] * len(row["input_ids"])
            elif pair_ids is None:
                row["special_tokens_mask"] = [1] + [0] * len(ids) + [1]
            else:
                row["special_tokens_mask"] = [1] + [0] * len(ids) + [1] + [0] * len(pair_ids) + [1]
        if options.return_attention_mask:
            row["attention_mask"] = [1] * len(row["input_ids"])
        return row

    def _truncate(self, ids, pair_ids, remove: int, strategy: str, stride: int):
        """Removes ``remove`` ids as transformers' Python tokenizers do; returns (ids, pair_ids, overflow).

        ``overflow`` holds the removed ids plus ``stride`` ids of context; it stays empty for a pair
        truncated ``longest_first``. When the sequence to cut is too short nothing is cut and an error is
        logged, as in transformers.
        """
        left = self.truncation_side == "left"
        if strategy == "only_first" or (strategy == "longest_first" and pair_ids is None):
            ids, overflow = self._cut(ids, remove, stride, left, "first", strategy)
            return ids, pair_ids, overflow
        if strategy == "only_second":
            if pair_ids is None:
                return ids, pair_ids, []
            pair_ids, overflow = self._cut(pair_ids, remove, stride, left, "second", strategy)
            return ids, pair_ids, overflow
        # longest_first on a pair: shorten the longer text to the other's length, then both alternately.
        first_remove = min(abs(len(pair_ids) - len(ids)), remove)
        rest = remove - first_remove
        if len(ids) > len(pair_ids):
            from_ids, from_pair = first_remove + rest // 2, rest - rest // 2
        else:
            from_ids, from_pair = rest // 2, first_remove + rest - rest // 2
        if left:
            return ids[from_ids:], pair_ids[from_pair:], []
        return (ids[:-from_ids] if from_ids else ids), (pair_ids[:-from_pair] if from_pair else pair_ids), []

    @staticmethod
    def _cut(ids, remove: int, stride: int, left: bool, which: str, strategy: str):
        if len(ids) <= remove:
            logger.error(
                "cannot truncate: %d tokens must go but the %s sequence has only %d; choose another truncation "
                "strategy than %r",
                remove,
                which,
                len(ids),
                strategy,
            )
            return ids, []
        window = min(len(ids), stride + remove)
        if left:
            return ids[remove:], ids[:window]
        return ids[:-remove], ids[-window:]

    # ---------------------------------------------------------------------------------- decoding
    def _decode_ids(self, ids: list[int], skip_special_tokens: bool) -> str:
        tokens = self.convert_ids_to_tokens(ids, skip_special_tokens)
        if skip_special_tokens:  # out-of-range ids read as [UNK], which is special too
            tokens = [token for token in tokens if token not in self.all_special_tokens]
        return " ".join(tokens).replace(" ##", "").strip()

    # ---------------------------------------------------------------------------------- saving
    def _config_for_saving(self) -> dict:
        config = super()._config_for_saving()
        config["do_basic_tokenize"] = self.do_basic_tokenize
        config["never_split"] = self.never_split
        return config

    def _save_vocab_files(self, directory: str) -> tuple[str, ...]:
        path = os.path.join(directory, VOCAB_FILE)
        self._write_vocab(path, self.vocab)
        return (path,)


def _round_up(length: int | None, multiple: int | None) -> int:
    assert length is not None, "padding to max_length needs max_length"  # EncodeOptions guarantees it
    if multiple and length % multiple:
        return (length // multiple + 1) * multiple
    return length


class DistilBertTokenizerFast(TokenizerBase):
    """DistilBERT's WordPiece tokenizer on the Rust ``tokenizers`` library.

    Gives the same tokens as :class:`DistilBertTokenizer` (up to the Unicode normalisation the Python one
    adds) and, in addition, character offsets (``return_offsets_mapping=True``) and, on the output,
    :meth:`BatchEncoding.word_ids`, :meth:`~BatchEncoding.sequence_ids` and
    :meth:`~BatchEncoding.char_to_token`. With ``return_overflowing_tokens=True`` and ``stride``, a long
    text becomes several rows (windows sharing ``stride`` tokens) and ``overflow_to_sample_mapping`` says
    which input each row comes from.

    Args:
        vocab_file: ``vocab.txt``; used to build the pipeline when there is no ``tokenizer_file``.
        tokenizer_file: ``tokenizer.json`` (a serialised ``tokenizers.Tokenizer``).
        do_lower_case: lowercase the text; overrides the normaliser stored in ``tokenizer_file``.
        unk_token: token for what the vocabulary cannot cover.
        sep_token: separator ending each text.
        pad_token: padding token.
        cls_token: first token of every input.
        mask_token: masked-LM mask token.
        tokenize_chinese_chars: make each CJK ideograph its own word.
        strip_accents: remove accents; ``None`` means "when lowercasing".
        model_max_length: default ``max_length`` for truncation and ``"max_length"`` padding.
        padding_side: ``"right"`` or ``"left"``.
        truncation_side: ``"right"`` or ``"left"``.
        clean_up_tokenization_spaces: :meth:`decode` removes spaces before punctuation by default; ``None``
            means as transformers: True when built from ``vocab_file``, False from ``tokenizer_file``.

    Raises:
        FileNotFoundError: a given file does not exist.
        ValueError: neither file given, an unreadable file, or a vocabulary lacking a special token.

    Example:
        >>> import pathlib, tempfile
        >>> path = pathlib.Path(tempfile.mkdtemp(), "vocab.txt")
        >>> vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "!", "##s"]
        >>> _ = path.write_text("\\n".join(vocab))
        >>> tok = DistilBertTokenizerFast(vocab_file=path)
        >>> enc = tok("Hello worlds!", return_offsets_mapping=True)
        >>> enc["input_ids"], enc["offset_mapping"][2], enc.word_ids()
        ([2, 5, 6, 8, 7, 3], (6, 11), [None, 0, 1, 1, 2, None])
    """

    def __init__(
        self,
        vocab_file: str | os.PathLike | None = None,
        tokenizer_file: str | os.PathLike | None = None,
        do_lower_case: bool = True,
        unk_token: str = "[UNK]",
        sep_token: str = "[SEP]",
        pad_token: str = "[PAD]",
        cls_token: str = "[CLS]",
        mask_token: str = "[MASK]",
        tokenize_chinese_chars: bool = True,
        strip_accents: bool | None = None,
        model_max_length: int = 512,
        padding_side: str = "right",
        truncation_side: str = "right",
        clean_up_tokenization_spaces: bool | None = None,
    ):
        special = _special_tokens(unk_token, sep_token, pad_token, cls_token, mask_token)
        for role, token in special.items():
            if not isinstance(token, str) or not token:
                raise TypeError(f"{role} must be a non-empty str, got {token!r}")
        if tokenizer_file is not None:
            where = os.fspath(tokenizer_file)
            self._tokenizer = _read_tokenizer_json(where)
            self._set_normalizer(do_lower_case, tokenize_chinese_chars, strip_accents)
        elif vocab_file is not None:
            where = os.fspath(vocab_file)
            vocab = load_vocab(where)
            missing = [token for token in special.values() if token not in vocab]
            if missing:
                raise ValueError(f"the vocabulary of {where!r} lacks the special tokens {missing}; add them to it")
            self._tokenizer = _build_backend(vocab, special, do_lower_case, tokenize_chinese_chars, strip_accents)
        else:
            raise ValueError("DistilBertTokenizerFast needs vocab_file (vocab.txt) or tokenizer_file (tokenizer.json)")
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = tokenizer_file is None
        self._init_common(
            special,
            do_lower_case,
            tokenize_chinese_chars,
            strip_accents,
            model_max_length,
            padding_side,
            truncation_side,
            clean_up_tokenization_spaces,
            where=repr(where),
        )
        # Each call sets truncation and padding itself; stored ones (e.g. in a sentence-transformers
        # tokenizer.json) would otherwise leak into tokenize().
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> DistilBertTokenizerFast:
        """Loads ``tokenizer.json`` (or, without one, ``vocab.txt``) and ``tokenizer_config.json`` from a
        directory (ours or transformers'), or a hub id through :mod:`distilbert.common.hub`. ``kwargs``
        override the stored settings.

        Raises:
            FileNotFoundError: the directory does not exist or holds neither file.
        """
        directory = resolve_directory(name_or_path)
        config = read_pretrained_config(directory)
        for slow_only in ("do_basic_tokenize", "never_split"):
            config.pop(slow_only, None)
        tokenizer_file = os.path.join(directory, TOKENIZER_FILE)
        vocab_file = os.path.join(directory, VOCAB_FILE)
        files: dict[str, Any]
        if os.path.isfile(tokenizer_file):
            files = {"tokenizer_file": tokenizer_file}
        elif os.path.isfile(vocab_file):
            files = {"vocab_file": vocab_file}
        else:
            raise FileNotFoundError(f"neither {TOKENIZER_FILE} nor {VOCAB_FILE} in {directory!r}")
        tokenizer = cls(**files, **{**config, **kwargs})
        tokenizer.name_or_path = os.fspath(name_or_path)
        return tokenizer

    def __repr__(self) -> str:
        return (
            f"DistilBertTokenizerFast(name_or_path={self.name_or_path!r}, vocab_size={self.vocab_size}, "
            f"model_max_length={self.model_max_length}, do_lower_case={self.do_lower_case})"
        )

    def _set_normalizer(self, do_lower_case, tokenize_chinese_chars, strip_accents) -> None:
        """Makes a stored BertNormalizer agree with the constructor arguments (transformers does the same,
        so a ``tokenizer_config.json`` saying ``do_lower_case: false`` wins over ``tokenizer.json``)."""
        from tokenizers import normalizers

        normalizer = self._tokenizer.normalizer
        if normalizer is None:
            return
        state = json.loads(normalizer.__getstate__())
        if state.get("type") != "BertNormalizer":
            return
        wanted = {
            "lowercase": do_lower_case,
            "handle_chinese_chars": tokenize_chinese_chars,
            "strip_accents": strip_accents,
        }
        if any(state.get(key) != value for key, value in wanted.items()):
            self._tokenizer.normalizer = normalizers.BertNormalizer(clean_text=state.get("clean_text", True), **wanted)

    # ------------------------------------------------------------------------------- vocabulary
    @property
    def backend_tokenizer(self):
        """The underlying ``tokenizers.Tokenizer``."""
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    @property
    def vocab(self) -> dict[str, int]:
        return self.get_vocab()

    def _token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def convert_ids_to_tokens(self, ids, skip_special_tokens: bool = False):
        """Token of an id (or list of tokens of a list of ids); ids outside the vocabulary give ``None``."""
        if isinstance(ids, int):
            return self._id_to_token(ids)
        specials = self._special_id_set if skip_special_tokens else ()
        return [self._id_to_token(int(i)) for i in ids if int(i) not in specials]

    def _id_to_token(self, index: int) -> str | None:
        if index < 0:
            return None
        return self._tokenizer.id_to_token(index)

    # ---------------------------------------------------------------------------------- tokenizing
    def _configure(self, options: EncodeOptions | None) -> None:
        """Sets the backend's truncation and padding for one call (``None``: neither), touching it only
        when something changed."""
        backend = self._tokenizer
        truncation = None if options is None or options.truncation == "do_not_truncate" else options.truncation
        if options is None or truncation is None:
            if backend.truncation is not None:
                backend.no_truncation()
        else:
            target = {
                "max_length": options.max_length,
                "stride": options.stride,
                "strategy": truncation,
                "direction": self.truncation_side,
            }
            current = backend.truncation
            if current is None or any(current.get(key) != value for key, value in target.items()):
                backend.enable_truncation(**target)
        if options is None or options.padding == "do_not_pad":
            if backend.padding is not None:
                backend.no_padding()
        else:
            target = {
                "length": options.max_length if options.padding == "max_length" else None,
                "direction": options.padding_side,
                "pad_id": self.pad_token_id,
                "pad_token": self.pad_token,
                "pad_type_id": self.pad_token_type_id,
                "pad_to_multiple_of": options.pad_to_multiple_of,
            }
            current = backend.padding
            if current is None or any(current.get(key) != value for key, value in target.items()):
                backend.enable_padding(**target)

    def tokenize(self, text: str, pair: str | None = None, add_special_tokens: bool = False) -> list[str]:
        """The tokens of ``text`` (and ``pair``), without ``[CLS]``/``[SEP]`` unless asked."""
        if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
            raise TypeError(f"tokenize takes str arguments, got {type(text).__name__} and {type(pair).__name__}")
        self._configure(None)
        inputs = [(text, pair)] if pair else [text]
        return _encode_batch(self._tokenizer, inputs, add_special_tokens, False)[0].tokens

    def _encode(self, texts: list, pairs: list | None, batched: bool, options: EncodeOptions) -> BatchEncoding:
        if pairs is None:
            inputs = texts
        elif batched:
            inputs = list(zip(texts, pairs))
        else:
            # transformers drops an empty second text of a single (unbatched) call: "[CLS] A [SEP]".
            inputs = [(texts[0], pairs[0])] if pairs[0] else texts
        self._configure(options)
        encodings = self._run_backend(inputs, options)
        mapping = None
        if options.return_overflowing_tokens:
            rows, mapping = [], []
            for i, encoding in enumerate(encodings):
                group = [encoding, *encoding.overflowing]
                rows.extend(group)
                mapping.extend([i] * len(group))
            encodings = rows
        data = {"input_ids": [e.ids for e in encodings]}
        if options.return_token_type_ids:
            data["token_type_ids"] = [e.type_ids for e in encodings]
        if options.return_attention_mask:
            data["attention_mask"] = [e.attention_mask for e in encodings]
        if options.return_special_tokens_mask:
            data["special_tokens_mask"] = [e.special_tokens_mask for e in encodings]
        if options.return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if options.return_length:
            data["length"] = [len(e.ids) for e in encodings]
        if mapping is not None:
            data["overflow_to_sample_mapping"] = mapping
        if not batched and options.return_tensors is None and not options.return_overflowing_tokens:
            # Unbatch the per-token lists; transformers leaves "length" as a one-item list here.
            data = {key: value[0] if value and isinstance(value[0], list) else value for key, value in data.items()}
        return BatchEncoding(data, encodings, tensor_type=options.return_tensors)

    def _run_backend(self, inputs: list, options: EncodeOptions) -> list:
        try:
            return _encode_batch(self._tokenizer, inputs, options.add_special_tokens, options.is_split_into_words)
        except Exception as exc:  # tokenizers reports e.g. impossible truncation as a bare Exception
            raise ValueError(
                f"cannot encode with truncation={options.truncation!r}, max_length={options.max_length}: {exc}"
            ) from exc
        except BaseException as exc:
            # A stride too large for the room truncation leaves makes the Rust code panic; name the fix.
            if type(exc).__name__ != "PanicException":
                raise
            raise ValueError(
                f"stride={options.stride} is too large for max_length={options.max_length}: it must be smaller "
                f"than the number of tokens a window keeps of the truncated text ({str(exc).splitlines()[0]})"
            ) from None

    # ---------------------------------------------------------------------------------- decoding
    def _decode_ids(self, ids: list[int], skip_special_tokens: bool) -> str:
        if any(i < 0 or i >= 2**32 for i in ids):
            raise ValueError(f"token ids must be in [0, 2**32); got {[i for i in ids if i < 0 or i >= 2**32][:5]}")
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    # ---------------------------------------------------------------------------------- saving
    def _save_vocab_files(self, directory: str) -> tuple[str, ...]:
        vocab_path = os.path.join(directory, VOCAB_FILE)
        tokenizer_path = os.path.join(directory, TOKENIZER_FILE)
        self._write_vocab(vocab_path, self._tokenizer.get_vocab(with_added_tokens=False))
        self._configure(None)
        write_text(tokenizer_path, self._tokenizer.to_str(pretty=True))
        return (vocab_path, tokenizer_path)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_surrogates(item):
    if isinstance(item, str):
        return _SURROGATE.sub("\ufffd", item)
    return type(item)(map(_replace_surrogates, item))  # a pair (tuple) or a list of words


def _encode_batch(backend, inputs: list, add_special_tokens: bool, is_pretokenized: bool) -> list:
    try:
        return backend.encode_batch(inputs, add_special_tokens=add_special_tokens, is_pretokenized=is_pretokenized)
    except TypeError:
        # Lone surrogates (not valid Unicode) cannot cross into Rust. U+FFFD keeps every character offset,
        # and BERT's normalizer drops it just as the Python tokenizer drops surrogates.
        cleaned = [_replace_surrogates(item) for item in inputs]
        if cleaned == inputs:
            raise
        return backend.encode_batch(cleaned, add_special_tokens=add_special_tokens, is_pretokenized=is_pretokenized)


def _read_tokenizer_json(path: str):
    from tokenizers import Tokenizer

    if not os.path.isfile(path):
        raise FileNotFoundError(f"tokenizer file not found: {path!r}")
    try:
        return Tokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises a bare Exception for malformed JSON
        raise ValueError(f"cannot read {path!r} as a tokenizers tokenizer.json: {exc}") from None


def _build_backend(
    vocab: dict[str, int], special: dict[str, str], do_lower_case, tokenize_chinese_chars, strip_accents
):
    """The BERT pipeline transformers builds from ``vocab.txt``: BertNormalizer, BertPreTokenizer,
    WordPiece (``##`` continuations, 100-character words at most), ``[CLS] A [SEP] B [SEP]`` template and
    WordPiece decoder, with the special tokens matched whole in raw text."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token=special["unk_token"], max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True,
        handle_chinese_chars=tokenize_chinese_chars,
        strip_accents=strip_accents,
        lowercase=do_lower_case,
    )
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls, sep = special["cls_token"], special["sep_token"]
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0",
        pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    backend.decoder = decoders.WordPiece(prefix="##")
    tokens = sorted(set(special.values()), key=vocab.__getitem__)
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in tokens])
    return backend
