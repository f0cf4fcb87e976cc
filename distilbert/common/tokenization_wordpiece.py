"""BERT basic tokenization and greedy longest-match WordPiece, in pure Python.

This is the algorithm behind :class:`distilbert.common.tokenization.DistilBertTokenizer`, kept apart
from the call-argument machinery so it can be read on its own. It reproduces the original BERT
pipeline (and transformers' pure-Python tokenizer) exactly:

1. drop NUL, U+FFFD and every character of Unicode category ``C*`` except tab/newline/return, and turn
   whitespace (space, tab, newline, return, category ``Zs``) into a space;
2. optionally surround each CJK ideograph with spaces;
3. NFC-normalise, split on whitespace;
4. per word: lowercase and strip accents (NFD, drop ``Mn``), then split off every punctuation
   character (ASCII symbols and category ``P*``) as its own word;
5. per word: greedy longest-match-first WordPiece with ``##`` continuation pieces; a word longer than
   ``max_input_chars_per_word`` characters, or one that cannot be covered, becomes the unknown token.

Speed comes from doing steps 1-3 with ``str`` methods (``translate`` over a lazily filled character
table, a regex for ASCII control characters) and caching steps 4-5 per word in an LRU cache: natural
text repeats words, so most words are a single dictionary hit.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable

# Python's str.split() also splits on these, but BERT deletes them (they are category Cc), so they must
# go before splitting: "a\x0bb" is one word "ab".
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Every ASCII character that is not a letter, digit or space counts as punctuation in BERT, even the
# symbols ($, ^, `) that Unicode files under S*.
_ASCII_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
_ASCII_PUNCT_SPLIT = re.compile(r"[!-/:-@\[-`{-~]|[^!-/:-@\[-`{-~]+")

_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)

_SIGMA = "\u03a3"


def is_whitespace(char: str) -> bool:
    """Space, tab, newline, carriage return, or Unicode category ``Zs``."""
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def is_control(char: str) -> bool:
    """Any Unicode category ``C*`` character except tab, newline and carriage return (BERT treats those as
    whitespace)."""
    return char not in "\t\n\r" and unicodedata.category(char)[0] == "C"


def is_punctuation(char: str) -> bool:
    """Non-alphanumeric printable ASCII, or Unicode category ``P*``."""
    return char in _ASCII_PUNCT or unicodedata.category(char)[0] == "P"


def is_cjk(code_point: int) -> bool:
    """A code point in the CJK Unified Ideographs blocks (not Hangul, Hiragana or Katakana)."""
    return any(low <= code_point <= high for low, high in _CJK_RANGES)


class _CleaningTable(dict):
    """A ``str.translate`` table over all of Unicode, filled on first sight of each code point.

    Computing the whole table up front would cost ~1 s of ``unicodedata`` calls at import; filling it
    lazily keeps ``translate`` in C for every character seen before.
    """

    def __init__(self, split_cjk: bool):
        super().__init__()
        self.split_cjk = split_cjk

    def __missing__(self, code_point: int) -> str | None:
        char = chr(code_point)
        if code_point == 0 or code_point == 0xFFFD or is_control(char):
            value = None
        elif is_whitespace(char):
            value = " "
        elif self.split_cjk and is_cjk(code_point):
            value = f" {char} "
        else:
            value = char
        self[code_point] = value
        return value


_CLEAN = _CleaningTable(split_cjk=False)
_CLEAN_SPLIT_CJK = _CleaningTable(split_cjk=True)


@functools.cache
def _is_punctuation_cached(char: str) -> bool:
    return is_punctuation(char)


def lowercase_chars(text: str) -> str:
    """Lowercases character by character, as transformers' slow tokenizers do before splitting off special
    tokens.

    This differs from ``text.lower()`` only for the Greek capital sigma, whose whole-string lowercase
    depends on its neighbours (final ``ς``); one character at a time it is always ``σ``.
    """
    if _SIGMA not in text:
        return text.lower()
    return "".join([char.lower() for char in text])


def strip_accents(text: str) -> str:
    """Decomposes (NFD) and drops the combining marks (category ``Mn``)."""
    return "".join([c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"])


def split_on_punctuation(word: str) -> list[str]:
    """Splits every punctuation character off as its own piece: ``"hi!?"`` -> ``["hi", "!", "?"]``."""
    if word.isascii():
        return _ASCII_PUNCT_SPLIT.findall(word)
    pieces = []
    start = 0
    for i, char in enumerate(word):
        if _is_punctuation_cached(char):
            if start < i:
                pieces.append(word[start:i])
            pieces.append(char)
            start = i + 1
    if start < len(word):
        pieces.append(word[start:])
    return pieces


def load_vocab(path: str) -> dict[str, int]:
    """Reads a ``vocab.txt``: one token a line, the id is the line number.

    A token that appears twice keeps the id of its last line, as in the original BERT code.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: the file is not UTF-8 text or holds no token.
    """
    vocab: dict[str, int] = {}
    try:
        # Text mode on purpose: "\r\n" and "\r" end lines too, exactly as the reference reads the file.
        with open(path, encoding="utf-8") as handle:
            for index, line in enumerate(handle):
                vocab[line.rstrip("\n")] = index
    except FileNotFoundError:
        raise FileNotFoundError(f"vocabulary file not found: {path!r}") from None
    except IsADirectoryError:
        raise FileNotFoundError(f"vocabulary path is a directory, not a vocab.txt file: {path!r}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"vocabulary file {path!r} is not UTF-8 text ({exc})") from None
    if not vocab:
        raise ValueError(f"vocabulary file {path!r} is empty")
    return vocab


class WordPieceSplitter:
    """Splits text (with no special tokens in it) into WordPiece tokens and ids.

    Args:
        vocab: token -> id.
        unk_token: the token for words the vocabulary cannot cover (must be in ``vocab``).
        do_lower_case: lowercase each word.
        strip_accents: strip accents; ``None`` means "when lowercasing", as in the original BERT.
        tokenize_chinese_chars: make each CJK ideograph its own word.
        never_split: words that are kept whole: neither lowercased nor split nor WordPiece'd.
        protected: further words that are neither lowercased nor split on punctuation, but still go
            through WordPiece (the tokenizer's special tokens, as in the reference).
        do_basic_tokenize: run steps 1-4 (cleaning, CJK, lowercasing, punctuation); if False, only split on
            whitespace before WordPiece.
        max_input_chars_per_word: longer words become ``unk_token``.
        cache_size: how many distinct words to remember.

    Example:
        >>> splitter = WordPieceSplitter({"[UNK]": 0, "un": 1, "##aff": 2, "##able": 3, "!": 4}, "[UNK]")
        >>> splitter.tokenize("Unaffable!")
        ['un', '##aff', '##able', '!']
    """

    def __init__(
        self,
        vocab: dict[str, int],
        unk_token: str,
        do_lower_case: bool = True,
        strip_accents: bool | None = None,
        tokenize_chinese_chars: bool = True,
        never_split: Iterable[str] = (),
        protected: Iterable[str] = (),
        do_basic_tokenize: bool = True,
        max_input_chars_per_word: int = 100,
        cache_size: int = 65536,
    ):
        self.vocab = vocab
        self.unk_token = unk_token
        self.unk_id = vocab[unk_token]
        self.do_lower_case = do_lower_case
        self.strip_accents = strip_accents
        self.tokenize_chinese_chars = tokenize_chinese_chars
        self.never_split = frozenset(never_split)
        self.protected = self.never_split | frozenset(protected)
        self.do_basic_tokenize = do_basic_tokenize
        self.max_input_chars_per_word = max_input_chars_per_word
        self.cache_size = cache_size
        # No vocabulary entry is longer than these, so longer candidate pieces need no lookup.
        self._longest = max(map(len, vocab))
        self._longest_continuation = max((len(t) - 2 for t in vocab if t.startswith("##")), default=0)
        self._table = _CLEAN_SPLIT_CJK if tokenize_chinese_chars else _CLEAN
        self._make_cache()

    def _make_cache(self) -> None:
        self.word_to_pieces = functools.lru_cache(maxsize=self.cache_size)(self._word_to_pieces)

    def __getstate__(self) -> dict:
        # The LRU wrapper cannot be pickled (tokenizers travel to DataLoader workers); rebuild it instead.
        state = self.__dict__.copy()
        del state["word_to_pieces"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._make_cache()

    def words(self, text: str) -> list[str]:
        """Steps 1-3: clean, space out CJK, NFC-normalise, split on whitespace."""
        if not self.do_basic_tokenize:
            return text.split()
        if text.isascii():
            if _ASCII_CONTROL.search(text):
                text = _ASCII_CONTROL.sub("", text)
        else:
            text = unicodedata.normalize("NFC", text.translate(self._table))
        return text.split()

    def tokenize(self, text: str) -> list[str]:
        """WordPiece tokens of ``text``."""
        tokens: list[str] = []
        for word in self.words(text):
            tokens.extend(self.word_to_pieces(word)[0])
        return tokens

    def encode(self, text: str) -> list[int]:
        """WordPiece ids of ``text``."""
        ids: list[int] = []
        for word in self.words(text):
            ids.extend(self.word_to_pieces(word)[1])
        return ids

    def _word_to_pieces(self, word: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
        """Steps 4-5 for one whitespace-free word: (tokens, ids)."""
        if not self.do_basic_tokenize:
            pieces = self._wordpiece(word)
            return tuple(pieces), tuple([self.vocab.get(t, self.unk_id) for t in pieces])
        if word in self.protected:
            pieces = [word]
        else:
            if self.do_lower_case:
                word = word.lower()
            if not word.isascii() and (self.strip_accents or (self.do_lower_case and self.strip_accents is not False)):
                word = strip_accents(word)
            pieces = [word] if word in self.protected else split_on_punctuation(word)
        tokens: list[str] = []
        for piece in pieces:
            # Lowercasing or accent stripping can leave a piece empty; splitting drops it.
            for sub_word in piece.split():
                if sub_word in self.never_split:
                    tokens.append(sub_word)
                else:
                    tokens.extend(self._wordpiece(sub_word))
        get = self.vocab.get
        return tuple(tokens), tuple([get(t, self.unk_id) for t in tokens])

    def _wordpiece(self, word: str) -> list[str]:
        """Greedy longest-match-first: at each position take the longest vocabulary entry that matches."""
        vocab = self.vocab
        length = len(word)
        if length > self.max_input_chars_per_word:
            return [self.unk_token]
        if word in vocab:
            return [word]
        pieces = []
        start = 0
        longest = self._longest
        while start < length:
            end = min(length, start + longest)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in vocab:
                    break
                end -= 1
            else:
                return [self.unk_token]
            pieces.append(piece)
            start = end
            longest = self._longest_continuation
        return pieces
