"""The fine-tuning data layer (``distilbert.common.finetune``): readers, labels, tokenising, batches, metrics.

No ML framework is imported here: everything is numpy and the tokenizer.
"""

import json
import math
import types

import numpy as np
import pytest
from helpers import PIPELINE_VOCAB, tiny_config

from distilbert import DistilBertTokenizerFast
from distilbert.common import finetune as ft
from distilbert.common.distillation import DistillationConfig, mask_tokens


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    vocab = tmp_path_factory.mktemp("vocab") / "vocab.txt"
    vocab.write_text("\n".join(PIPELINE_VOCAB) + "\n")
    return DistilBertTokenizerFast(vocab_file=str(vocab), model_max_length=64)


def write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(json.dumps(x) if not isinstance(x, str) else x for x in lines) + "\n")
    return str(path)


def read(path, task):
    return ft.read_records(path, task)


# ------------------------------------------------------------------------------------- readers
def test_text_classification_jsonl_and_csv_read_the_same(tmp_path, tokenizer):
    rows = [
        {"text": "the cat sat", "label": "good"},
        {"text": "a dog", "text_pair": "the mat", "label": "bad"},
        {"text": "the film", "label": "good"},
    ]
    jsonl = write(tmp_path, "train.jsonl", rows[:1] + [""] + rows[1:])  # a blank line is skipped
    csv = tmp_path / "train.csv"
    csv.write_text('text,text_pair,label\nthe cat sat,,good\n"a dog",the mat,bad\nthe film,,good\n')
    a, b = read(jsonl, "sequence_classification"), read(str(csv), "sequence_classification")
    assert [n for n, _ in a] == [1, 3, 4] and [n for n, _ in b] == [2, 3, 4]
    assert [item for _, item in a] == [item for _, item in b]
    label2id, new = ft.choose_labels(jsonl, ft.label_values(a, "sequence_classification"), None)
    assert (label2id, new) == ({"bad": 0, "good": 1}, True)
    examples = ft.encode(jsonl, a, "sequence_classification", tokenizer, 12, label2id)
    assert examples.arrays["labels"].tolist() == [1, 0, 1] and examples.label_names == ["bad", "good"]
    want = tokenizer("a dog", "the mat", max_length=12, padding="max_length", truncation=True)
    assert examples.arrays["input_ids"][1].tolist() == want["input_ids"]
    assert examples.arrays["attention_mask"][1].tolist() == want["attention_mask"]
    single = tokenizer("the cat sat", max_length=12, padding="max_length", truncation=True)
    assert examples.arrays["input_ids"][0].tolist() == single["input_ids"]
    assert all(a.dtype == np.int64 for a in examples.arrays.values())


def test_labels_keep_the_models_head_or_make_a_new_label_set():
    known = {"NEGATIVE": 0, "POSITIVE": 1}
    keep = [(1, "POSITIVE"), (2, 0), (3, "1")]
    assert ft.choose_labels("f", keep, known) == (known, False)
    assert ft.choose_labels("f", [(1, "b"), (2, "a"), (3, "POSITIVE")], known) == (
        {"POSITIVE": 0, "a": 1, "b": 2},
        True,
    )
    assert ft.choose_labels("f", [(1, 2), (2, "0")], None) == ({"LABEL_0": 0, "LABEL_1": 1, "LABEL_2": 2}, True)
    with pytest.raises(ValueError, match=r"^f:2: label 5 is not a class of the model \(\[0, 2\) or one of NEG"):
        ft.choose_labels("f", [(1, "POSITIVE"), (2, 5)], known)
    with pytest.raises(ValueError, match=r"^f:3: label 1 is a class id, but the file's labels are names"):
        ft.choose_labels("f", [(1, "x"), (2, "y"), (3, 1)], None)
    with pytest.raises(ValueError, match=r"^f:1: label -1 is not a class"):
        ft.choose_labels("f", [(1, -1)], None)
    assert ft.label_id("f:1", "b", {"a": 0, "b": 1}) == 1 and ft.label_id("f:1", 0, {"a": 0, "b": 1}) == 0
    with pytest.raises(ValueError, match=r"^f:9: label 'c' is not in the label set \(a, b\)"):
        ft.label_id("f:9", "c", {"a": 0, "b": 1})


def test_token_classification_labels_the_first_piece_of_each_word(tmp_path, tokenizer):
    words = ["ada", "lovelace", "lived", "in", "london"]
    tags = ["B-PER", "I-PER", "O", "O", "B-LOC"]
    path = write(tmp_path, "ner.jsonl", [{"tokens": words, "tags": tags}, {"tokens": ["the", "cat"], "tags": [2, 2]}])
    records = read(path, "token_classification")
    with pytest.raises(ValueError, match=r"ner.jsonl:2: label 2 is a class id"):
        ft.choose_labels(path, ft.label_values(records, "token_classification"), None)
    records = records[:1]
    label2id, new = ft.choose_labels(path, ft.label_values(records, "token_classification"), None)
    assert new and list(label2id) == ["B-LOC", "B-PER", "I-PER", "O"]
    examples = ft.encode(path, records, "token_classification", tokenizer, 16, label2id)
    # By hand: [CLS], then each word's pieces (the first labelled, the rest -100), [SEP], padding.
    want = [-100]
    for word, tag in zip(words, tags):
        pieces = tokenizer.tokenize(word)
        want += [label2id[tag]] + [-100] * (len(pieces) - 1)
    assert len(want) + 1 <= 16, "the example must fit, or the test checks nothing past the cut"
    want += [-100] * (16 - len(want))
    assert examples.arrays["labels"][0].tolist() == want
    assert sum(len(tokenizer.tokenize(w)) > 1 for w in words) >= 1, "a word of several pieces is needed"
    # Cut at the maximum length: the words past it have no label.
    short = ft.encode(path, records, "token_classification", tokenizer, 5, label2id)
    assert (short.arrays["labels"][0] != -100).sum() < len(words) and short.arrays["labels"][0, -1] == -100


def test_multiple_choice_pairs_the_question_with_each_choice(tmp_path, tokenizer):
    rows = [
        {"question": "where is paris?", "choices": ["in france", "in london", "on the mat"], "label": 0},
        {"choices": ["the cat sat", "the dog sat", "a car"], "label": "2"},
    ]
    path = write(tmp_path, "mc.jsonl", rows)
    examples = ft.encode(path, read(path, "multiple_choice"), "multiple_choice", tokenizer, 10)
    ids, mask = examples.arrays["input_ids"], examples.arrays["attention_mask"]
    assert ids.shape == mask.shape == (2, 3, 10) and examples.arrays["labels"].tolist() == [0, 2]
    assert (
        ids[0, 1].tolist()
        == tokenizer("where is paris?", "in london", max_length=10, padding="max_length")["input_ids"]
    )
    assert ids[1, 2].tolist() == tokenizer("a car", max_length=10, padding="max_length")["input_ids"]
    csv = tmp_path / "mc.csv"
    csv.write_text("question,choice0,choice1,choice2,label\nwhere is paris?,in france,in london,on the mat,0\n")
    assert read(str(csv), "multiple_choice")[0][1] == rows[0]


def test_fill_mask_reads_plain_text_and_masks_each_step_by_seed_and_step(tmp_path, tokenizer):
    path = tmp_path / "corpus.txt"
    path.write_text("the cat sat on the mat\n\nthe dog sat\nada lived in london\nparis is a city\n")
    records = read(str(path), "masked_lm")
    assert [n for n, _ in records] == [1, 3, 4, 5]
    examples = ft.encode(str(path), records, "masked_lm", tokenizer, 12)
    masking = ft.masking_for(examples, len(PIPELINE_VOCAB), tokenizer.all_special_ids, tokenizer.mask_token_id)
    assert masking.weights[tokenizer.all_special_ids].sum() == 0
    batches = ft.Batches(examples.arrays, 2, epochs=2, seed=5, masking=masking)
    for k in range(len(batches)):
        batch = batches[k]
        rows = batches.order(k // 2)[(k % 2) * 2 : (k % 2) * 2 + 2]
        ids, labels = mask_tokens(
            examples.arrays["input_ids"][rows],
            examples.arrays["attention_mask"][rows],
            masking.weights,
            tokenizer.mask_token_id,
            DistillationConfig(),
            np.random.default_rng([5, k]),
        )
        np.testing.assert_array_equal(batch["input_ids"], ids)
        np.testing.assert_array_equal(batch["labels"], labels)
        assert (batch["labels"] != -100).any()
    evaluation = ft.mask_once(examples, masking, seed=5)
    again = ft.mask_once(examples, masking, seed=5)
    np.testing.assert_array_equal(evaluation.arrays["labels"], again.arrays["labels"])
    assert (evaluation.arrays["labels"] != -100).any() and "labels" not in examples.arrays


# ------------------------------------------------------------------------------- question answering
CONTEXT = "ada lovelace lived in london and paris . the capital city of france is paris . she saw a big red house ."


def qa_records(tmp_path, answers):
    rows = [{"question": "where did ada live?", "context": CONTEXT, "answers": answers}]
    path = write(tmp_path, "qa.jsonl", rows)
    return path, read(path, "question_answering")


def test_qa_windows_are_the_pipelines_windows(tmp_path, tokenizer, monkeypatch):
    from distilbert.pipelines.question_answering import QuestionAnsweringPipeline

    config = tiny_config(vocab_size=len(PIPELINE_VOCAB))
    qa = QuestionAnsweringPipeline(types.SimpleNamespace(config=config), tokenizer, runner=None)
    seen = []

    def run(rows):
        seen.extend(rows)
        return [
            {"start_logits": np.zeros(r["input_ids"].shape), "end_logits": np.zeros(r["input_ids"].shape)} for r in rows
        ]

    monkeypatch.setattr(qa, "run", run)
    questions = ["where did ada live?", "what is the capital city of france?"]
    qa(question=questions, context=[CONTEXT, CONTEXT[:40]], max_seq_len=28)
    rows = [
        {"question": q, "context": c, "answers": {"text": [], "answer_start": []}}
        for q, c in zip(questions, [CONTEXT, CONTEXT[:40]])
    ]
    path = write(tmp_path, "qa.jsonl", rows)
    examples = ft.encode(path, read(path, "question_answering"), "question_answering", tokenizer, 28)
    assert len(examples) == len(seen) > 3, "the contexts must need several windows"
    for w, row in enumerate(seen):
        n = int(examples.arrays["attention_mask"][w].sum())
        assert examples.arrays["input_ids"][w, :n].tolist() == row["input_ids"].tolist()
        assert (examples.arrays["input_ids"][w, n:] == 0).all()
    assert examples.example_of.tolist() == sorted(examples.example_of.tolist()) and set(examples.example_of) == {0, 1}
    assert (examples.arrays["start_positions"] == 0).all() and (examples.arrays["end_positions"] == 0).all()


def test_qa_positions_mark_the_answer_in_each_window_that_holds_it(tmp_path, tokenizer):
    answer = "a big red house"
    start = CONTEXT.index(answer)
    path, records = qa_records(tmp_path, {"text": [answer], "answer_start": [start]})
    examples = ft.encode(path, records, "question_answering", tokenizer, 32)
    starts, ends = examples.arrays["start_positions"], examples.arrays["end_positions"]
    assert len(examples) > 2 and (starts > 0).any() and (starts == 0).any(), "windows with and without the answer"
    for w in range(len(examples)):
        offsets = examples.offsets[w]
        context_tokens = np.flatnonzero(offsets[:, 0] >= 0)
        whole = offsets[context_tokens[0], 0] <= start and offsets[context_tokens[-1], 1] >= start + len(answer)
        if not whole:
            assert starts[w] == ends[w] == 0
            continue
        assert 0 < starts[w] <= ends[w]
        assert CONTEXT[offsets[starts[w], 0] : offsets[ends[w], 1]] == answer
        tokens = tokenizer.convert_ids_to_tokens(examples.arrays["input_ids"][w, starts[w] : ends[w] + 1].tolist())
        assert " ".join(tokens).replace(" ##", "") == answer
    # The answer predicted from logits peaked on those positions is the answer.
    logits = np.zeros(examples.arrays["input_ids"].shape)
    start_logits, end_logits = logits.copy(), logits.copy()
    w = int(np.flatnonzero(starts)[0])
    start_logits[w, starts[w]], end_logits[w, ends[w]] = 5.0, 5.0
    assert ft.best_answers(examples, start_logits, end_logits) == [answer]
    metrics = ft.evaluate(examples, {"start_logits": start_logits, "end_logits": end_logits})
    assert metrics["exact_match"] == metrics["f1"] == 100.0
    # A scalar answer reads as a one-answer list; no answer is [CLS].
    _, scalar = qa_records(tmp_path, {"text": answer, "answer_start": start})
    assert ft.answers_of(scalar[0][1]) == [(answer, start)]
    path, none = qa_records(tmp_path, {"text": [], "answer_start": []})
    empty = ft.encode(path, none, "question_answering", tokenizer, 32)
    assert (empty.arrays["start_positions"] == 0).all() and empty.answers == [[]]


# ------------------------------------------------------------------------------------ bad data
BAD = {
    "not json": ("x.jsonl", ['{"text": "a", "label": 0}', "{nope"], "text_classification", r"x.jsonl:2: not JSON"),
    "not an object": ("x.jsonl", ["[1, 2]"], "text_classification", r"x.jsonl:1: expected a JSON object, got list"),
    "missing text": ("x.jsonl", [{"label": 0}], "text_classification", r"x.jsonl:1: missing field 'text'"),
    "missing label": ("x.jsonl", ["", {"text": "a"}], "text_classification", r"x.jsonl:2: missing field 'label'"),
    "bool label": ("x.jsonl", [{"text": "a", "label": True}], "text_classification", r"x.jsonl:1: field 'label' must"),
    "csv header": ("x.csv", ["sentence,label", "a,0"], "text_classification", r"x.csv:1: the header must name"),
    "csv columns": ("x.csv", ["text,label", "a,0,extra"], "text_classification", r"x.csv:2: expected 2 columns"),
    "csv for tokens": ("x.csv", ["tokens,tags"], "token_classification", r"x.csv: token_classification data is"),
    "empty": ("x.jsonl", ["", ""], "text_classification", r"x.jsonl: the file holds no example"),
    "tags": ("x.jsonl", [{"tokens": ["a", "b"], "tags": ["O"]}], "token_classification", r"x.jsonl:1: 1 tags for 2"),
    "no tokens": ("x.jsonl", [{"tokens": [], "tags": []}], "token_classification", r"x.jsonl:1: field 'tokens'"),
    "answer": (
        "x.jsonl",
        [{"question": "q", "context": "the cat sat", "answers": {"text": ["dog"], "answer_start": [4]}}],
        "question_answering",
        r"x.jsonl:1: answer 'dog' is not in its context at answer_start 4",
    ),
    "answer offset": (
        "x.jsonl",
        [{"question": "q", "context": "the cat sat", "answers": {"text": ["cat"], "answer_start": [3]}}],
        "question_answering",
        r"x.jsonl:1: answer 'cat' is not in its context at answer_start 3",
    ),
    "answers shape": (
        "x.jsonl",
        [{"question": "q", "context": "c", "answers": {"text": ["c"], "answer_start": []}}],
        "question_answering",
        r"x.jsonl:1: 'answers.text' and 'answers.answer_start' must be lists of the same length",
    ),
    "missing answers": ("x.jsonl", [{"question": "q", "context": "c"}], "question_answering", r"x.jsonl:1: missing"),
    "question too long": (
        "x.jsonl",
        [{"question": "the cat sat on the mat", "context": "c", "answers": {"text": [], "answer_start": []}}],
        "question_answering",
        None,
    ),
    "choice label": (
        "x.jsonl",
        [{"choices": ["a", "b"], "label": 2}],
        "multiple_choice",
        r"x.jsonl:1: label 2 is not a choice index in \[0, 2\)",
    ),
    "choice count": (
        "x.jsonl",
        [{"choices": ["a", "b"], "label": 0}, {"choices": ["a", "b", "c"], "label": 0}],
        "multiple_choice",
        r"x.jsonl:2: 3 choices, but line 1 has 2",
    ),
    "jsonl corpus": ("x.jsonl", [{"txt": "a"}], "masked_lm", r"x.jsonl:1: missing field 'text'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_data_names_the_file_and_line(tmp_path, tokenizer, case):
    name, lines, task, message = BAD[case]
    task = task.replace("text_classification", "sequence_classification")
    path = write(tmp_path, name, lines)
    if message is None:  # found when tokenising
        with pytest.raises(ValueError, match=r"x.jsonl:1: the question takes 6 tokens; windows of 16 tokens"):
            ft.encode(path, read(path, task), task, tokenizer, 16)
        return
    with pytest.raises(ValueError, match="^" + str(tmp_path).replace("\\", "\\\\") + "/" + message):
        read(path, task)


def test_a_label_outside_the_label_set_names_its_line(tmp_path, tokenizer):
    path = write(tmp_path, "eval.jsonl", [{"text": "a", "label": "good"}, {"text": "b", "label": "meh"}])
    with pytest.raises(ValueError, match=r"eval.jsonl:2: label 'meh' is not in the label set \(bad, good\)"):
        ft.encode(
            path, read(path, "sequence_classification"), "sequence_classification", tokenizer, 8, {"bad": 0, "good": 1}
        )
    path = write(
        tmp_path, "ner.jsonl", [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "b"], "tags": ["O", "B-X"]}]
    )
    with pytest.raises(ValueError, match=r"ner.jsonl:2: label 'B-X' is not in the label set \(O\)"):
        ft.encode(path, read(path, "token_classification"), "token_classification", tokenizer, 8, {"O": 0})
    with pytest.raises(FileNotFoundError, match="no data file"):
        read(str(tmp_path / "nope.jsonl"), "sequence_classification")


# ------------------------------------------------------------------------------------ batches
def arrays(n=7):
    return {"input_ids": np.arange(n * 3).reshape(n, 3), "labels": np.arange(n)}


def test_batches_are_seeded_permutations_per_epoch_with_the_last_partial_batch_dropped():
    batches = ft.Batches(arrays(7), batch_size=3, epochs=2, seed=11)
    assert len(batches) == 4 and batches.steps_per_epoch == 2
    for epoch in range(2):
        order = np.random.default_rng([11, epoch]).permutation(7)
        got = np.concatenate([batches[epoch * 2 + j]["labels"] for j in range(2)])
        np.testing.assert_array_equal(got, order[:6])  # the 7th row of the epoch is dropped
        np.testing.assert_array_equal(batches[epoch * 2]["input_ids"], arrays(7)["input_ids"][order[:3]])
    assert not np.array_equal(batches.order(0), batches.order(1))
    assert all(b["labels"].shape == (3,) for b in batches)  # iteration stops at the end
    # A pure function of (seed, k): another object, any access order, slices.
    other = ft.Batches(arrays(7), batch_size=3, epochs=2, seed=11)
    for k in (3, 0, 2, 1, -1):
        np.testing.assert_array_equal(other[k]["labels"], batches[k]["labels"])
    rest = batches[1:]
    assert len(rest) == 3
    for k in range(3):
        np.testing.assert_array_equal(rest[k]["labels"], batches[k + 1]["labels"])
    with pytest.raises(IndexError):
        batches[4]
    assert not np.array_equal(ft.Batches(arrays(7), 3, 2, seed=12)[0]["labels"], batches[0]["labels"])
    with pytest.raises(ValueError, match="exceeds the 7 training rows"):
        ft.Batches(arrays(7), batch_size=8, epochs=1, seed=0)
    with pytest.raises(ValueError, match="different numbers of rows"):
        ft.Batches({"a": np.zeros(3), "b": np.zeros(4)}, 1, 1, 0)


def test_shard_splits_rows_evenly_and_refuses_an_uneven_split():
    batch = {"input_ids": np.arange(24).reshape(6, 4), "labels": np.arange(6)}
    parts = [ft.shard(batch, rank, 3) for rank in range(3)]
    assert [p["labels"].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    np.testing.assert_array_equal(np.concatenate([p["input_ids"] for p in parts]), batch["input_ids"])
    assert ft.shard(batch, 0, 1)["labels"].tolist() == list(range(6))
    with pytest.raises(ValueError, match="does not split over 4 workers"):
        ft.shard(batch, 0, 4)
    with pytest.raises(ValueError, match=r"rank 2 is not in \[0, 2\)"):
        ft.shard(batch, 2, 2)


def test_in_order_keeps_the_file_order_and_the_last_small_batch():
    got = [b["labels"].tolist() for b in ft.in_order(arrays(5), 2, ["labels"])]
    assert got == [[0, 1], [2, 3], [4]]


# ------------------------------------------------------------------------------------ metrics
def test_accuracy_and_cross_entropy_by_hand():
    assert ft.accuracy([1, 0, 2, 2], [1, 1, 2, -100]) == pytest.approx(2 / 3)
    logits = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    assert ft.cross_entropy(logits, np.array([0, 1])) == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)
    assert ft.cross_entropy(logits, np.array([-100, 2])) == pytest.approx(-math.log(0.1))
    assert ft.cross_entropy(logits, np.array([-100, -100])) == 0.0


def test_entity_scores_by_hand():
    true = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    guess = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "O"]]
    # Gold: PER(0-1), LOC(3), ORG(0), PER(2); predicted: PER(0-1), ORG(3), ORG(0): 2 of 3 right, 2 of 4 found.
    scores = ft.entity_scores(true, guess)
    assert scores["precision"] == pytest.approx(2 / 3) and scores["recall"] == pytest.approx(1 / 2)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert scores["accuracy"] == pytest.approx(5 / 7)
    # seqeval's default chunking: an I- after O starts an entity, a type change splits one, BILOU as IOBES.
    assert ft.entities(["O", "I-PER", "I-PER", "I-LOC"]) == {("PER", 1, 2), ("LOC", 3, 3)}
    assert ft.entities(["B-PER", "E-PER", "S-LOC", "U-LOC", "L-LOC"]) == {
        ("PER", 0, 1),
        ("LOC", 2, 2),
        ("LOC", 3, 3),
        ("LOC", 4, 4),
    }
    assert ft.entities(["PER", "PER", "O", "LOC"]) == {("PER", 0, 1), ("LOC", 3, 3)}
    assert ft.entity_scores([["O"]], [["O"]]) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1.0}
    with pytest.raises(ValueError, match="same sentences and lengths"):
        ft.entity_scores([["O"]], [["O", "O"]])


def test_squad_scores_by_hand():
    assert ft.normalize_answer("The  Capital, of France!") == "capital of france"
    predictions = ["the capital city", "Paris", "in london", "x"]
    answers = [["capital city of france"], ["paris", "PARIS!"], ["london"], []]
    scores = ft.squad_scores(predictions, answers)
    # 1: tokens capital city vs capital city of france: P 1, R 2/4 -> F1 2/3; 2: exact; 3: P 1/2 R 1 -> 2/3; 4: 0.
    assert scores["exact_match"] == pytest.approx(100 * 1 / 4)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 1 + 2 / 3 + 0) / 4)
    assert ft.squad_scores([""], [[]]) == {"exact_match": 100.0, "f1": 100.0}


def test_best_answer_spans_windows_and_respects_the_length_limit():
    examples = ft.Examples(
        "question_answering",
        {"input_ids": np.zeros((2, 6), np.int64)},
        example_of=np.array([0, 0]),
        offsets=np.array([[[-1, -1], [0, 3], [4, 7], [8, 11], [-1, -1], [-1, -1]]] * 2),
        contexts=["the cat sat"],
        answers=[["cat"]],
    )
    start, end = np.zeros((2, 6)), np.zeros((2, 6))
    start[0, 0] = end[0, 0] = 100.0  # [CLS] is not an answer
    start[0, 3], end[0, 1] = 9.0, 9.0  # end before start (18) is not a span; the best here is 9
    start[1, 2], end[1, 2] = 6.0, 6.0  # "cat" in the second window: 12
    assert ft.best_answers(examples, start, end) == ["cat"]
    start[0, 1:], end[0, 1:] = 0.0, 0.0
    start[0, 1], end[0, 3] = 8.0, 8.0  # "the cat sat": 16
    assert ft.best_answers(examples, start, end) == ["the cat sat"]


def test_best_answer_is_at_most_max_answer_tokens_long():
    n = ft.MAX_ANSWER_TOKENS + 3
    offsets = np.array([[[-1, -1]] + [[2 * i, 2 * i + 1] for i in range(n)]])
    examples = ft.Examples(
        "question_answering", {}, example_of=np.array([0]), offsets=offsets, contexts=["a " * n], answers=[["a"]]
    )
    start, end = np.zeros((1, n + 1)), np.zeros((1, n + 1))
    start[0, 1], end[0, n] = 10.0, 10.0  # too long a span
    end[0, 2] = 1.0
    assert ft.best_answers(examples, start, end) == ["a a"]


def test_evaluate_each_task_by_hand():
    labels = np.array([0, 1, 1])
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    out = ft.evaluate(ft.Examples("sequence_classification", {"labels": labels}), {"logits": logits})
    assert out["accuracy"] == pytest.approx(2 / 3) and out["loss"] == pytest.approx(ft.cross_entropy(logits, labels))
    tags = np.array([[-100, 0, 1, -100], [-100, 2, -100, -100]])  # names B-X, I-X, O
    logits = np.zeros((2, 4, 3))
    logits[0, 1, 0] = logits[0, 2, 2] = logits[1, 1, 2] = 1.0  # B-X O | O
    examples = ft.Examples("token_classification", {"labels": tags}, label_names=["B-X", "I-X", "O"])
    out = ft.evaluate(examples, {"logits": logits})
    # Gold: X(0-1); predicted: X(0) -> precision 0, recall 0; tags right: 2 of 3.
    assert (out["precision"], out["recall"], out["f1"]) == (0.0, 0.0, 0.0) and out["accuracy"] == pytest.approx(2 / 3)
    mlm = ft.Examples("masked_lm", {"labels": np.array([[-100, 1], [0, -100]])})
    out = ft.evaluate(mlm, {"logits": np.log(np.full((2, 2, 2), 0.5))})
    assert out["loss"] == pytest.approx(math.log(2)) and out["perplexity"] == pytest.approx(2.0)


def test_loss_counts_count_what_each_task_averages_over():
    ids = np.zeros((3, 5), np.int64)
    assert ft.loss_counts("sequence_classification", {"input_ids": ids, "labels": np.array([0, 1, 1])}) == {
        "examples": 3
    }
    labels = np.array([[-100, 2, -100, 1, -100], [-100] * 5, [0, -100, -100, -100, -100]])
    assert ft.loss_counts("token_classification", {"input_ids": ids, "labels": labels}) == {"labels": 3}
    # QA: a position at or past the sequence length (5) is clamped to it and ignored; a negative one clamps to 0.
    qa = {"input_ids": ids, "start_positions": np.array([1, 5, 9]), "end_positions": np.array([[2], [-1], [4]])}
    assert ft.loss_counts("question_answering", qa) == {"start": 1, "end": 3}
