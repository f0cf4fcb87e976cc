"""The token-classification (NER) pipeline: a label per word piece, or entities grouped over words."""

from __future__ import annotations

import numpy as np

from distilbert.pipelines.base import Pipeline, as_texts, rows_of, softmax

STRATEGIES = ("none", "simple", "first", "average", "max")


class TokenClassificationPipeline(Pipeline):
    """Labels the tokens of texts with a token-classification checkpoint (named entities, ...), as
    transformers' token-classification pipeline does.

    Each text gives a list of dicts with ``score``, ``word``, and the character offsets ``start`` and
    ``end`` of the entity in the text (``text[start:end]``). How word pieces are combined is the
    ``aggregation_strategy``:

    - ``"none"``: one dict per word piece, with ``entity`` (its best label) and ``index`` (its token
      position);
    - ``"simple"``: adjacent pieces whose labels name the same entity type (``B-PER I-PER``, or equal
      labels without a ``B-``/``I-`` prefix) are merged into one dict with ``entity_group`` (the type),
      the mean score and the joined ``word``; a ``B-`` label starts a new entity;
    - ``"first"``, ``"average"``, ``"max"``: first every word gets one label (that of its first piece,
      of the average of its pieces' scores, or of its highest-scoring piece), then words are merged
      as in ``"simple"``. A word never ends up split between two entities.

    Entities whose label (or group) is in ``ignore_labels`` are left out. Texts longer than the model
    are cut at its length, unless ``stride`` is given: then the text is read in overlapping windows
    sharing ``stride`` tokens, and where entities of two windows overlap the longer one (or, equally
    long, the higher-scoring one) is kept.

    Call keyword arguments:
        aggregation_strategy: One of ``"none"`` (default), ``"simple"``, ``"first"``, ``"average"``, ``"max"``.
        ignore_labels: Labels to leave out (default ``["O"]``).
        stride: Tokens shared by consecutive windows of a long text (needs an aggregation strategy).

    Example:
        >>> ner = pipeline("ner", model="my-ner-checkpoint", aggregation_strategy="simple")  # doctest: +SKIP
        >>> ner("Ada Lovelace lived in London.")  # doctest: +SKIP
        [{'entity_group': 'PER', 'score': 0.99, 'word': 'ada lovelace', 'start': 0, 'end': 12}, ...]
    """

    name = "token-classification"
    model_task = "token_classification"
    needs_offsets = True

    def _call(self, inputs, *, aggregation_strategy: str = "none", ignore_labels=("O",), stride: int | None = None):
        strategy = str(aggregation_strategy).lower()
        if strategy not in STRATEGIES:
            raise ValueError(f"aggregation_strategy must be one of {STRATEGIES}, got {aggregation_strategy!r}")
        kwargs = {
            "truncation": True,
            "max_length": self.max_length,
            "return_offsets_mapping": True,
            "return_special_tokens_mask": True,
        }
        if stride is not None:
            if strategy == "none":
                raise ValueError(
                    "stride reads a long text in overlapping windows, whose pieces only merge with an "
                    "aggregation_strategy; pass aggregation_strategy='simple' (or first/average/max)"
                )
            if isinstance(stride, bool) or not isinstance(stride, int) or not 0 <= stride < self.max_length - 2:
                raise ValueError(f"stride must be an integer in [0, {self.max_length - 2}), got {stride!r}")
            kwargs.update(return_overflowing_tokens=True, stride=stride)
        single = isinstance(inputs, str)
        texts = [inputs] if single else as_texts(inputs)
        encoding = self.tokenizer(texts, **kwargs)
        owner = encoding["overflow_to_sample_mapping"] if stride is not None else range(len(texts))
        windows: list[list[list[dict]]] = [[] for _ in texts]
        for i, out in enumerate(self.run(rows_of(encoding))):
            text = texts[owner[i]]
            pieces = self._pieces(text, encoding, i, softmax(out["logits"]))
            entities = self._aggregate(pieces, strategy)
            windows[owner[i]].append(
                [e for e in entities if e.get("entity", e.get("entity_group")) not in ignore_labels]
            )
        results = [
            found[0] if len(found) == 1 else _resolve_overlaps([e for w in found for e in w]) for found in windows
        ]
        return results[0] if single else results

    def _pieces(self, text: str, encoding, row: int, scores: np.ndarray) -> list[dict]:
        """The word pieces of one row (special tokens left out) with their scores and characters."""
        ids = encoding["input_ids"][row]
        special = encoding["special_tokens_mask"][row]
        offsets = encoding["offset_mapping"][row]
        word_ids = encoding.word_ids(row)
        pieces = []
        for index, token_id in enumerate(ids):
            if special[index]:
                continue
            start, end = (int(x) for x in offsets[index])
            unknown = token_id == self.tokenizer.unk_token_id
            pieces.append(
                {
                    # An unknown word reads as itself rather than as "[UNK]".
                    "word": text[start:end] if unknown else self.tokenizer.convert_ids_to_tokens(int(token_id)),
                    "scores": scores[index],
                    "start": start,
                    "end": end,
                    "index": index,
                    # A piece continues the word of the piece before it (the tokenizer knows the words).
                    "continues": index > 0 and not special[index - 1] and word_ids[index] == word_ids[index - 1],
                }
            )
        return pieces

    def _aggregate(self, pieces: list[dict], strategy: str) -> list[dict]:
        labels = self.config.id2label
        if strategy in ("none", "simple"):
            entities = []
            for piece in pieces:
                best = int(np.argmax(piece["scores"]))
                entities.append(
                    {
                        "entity": labels[best],
                        "score": float(piece["scores"][best]),
                        "index": piece["index"],
                        "word": piece["word"],
                        "start": piece["start"],
                        "end": piece["end"],
                    }
                )
            return entities if strategy == "none" else self._group(entities)
        words: list[dict] = []
        current: list[dict] = []
        for piece in pieces:
            if current and not piece["continues"]:
                words.append(self._word(current, strategy))
                current = []
            current.append(piece)
        if current:
            words.append(self._word(current, strategy))
        return self._group(words)

    def _word(self, pieces: list[dict], strategy: str) -> dict:
        """One label for a whole word, from its pieces."""
        if strategy == "first":
            scores = pieces[0]["scores"]
        elif strategy == "max":
            scores = max(pieces, key=lambda piece: piece["scores"].max())["scores"]
        else:
            scores = np.nanmean(np.stack([piece["scores"] for piece in pieces]), axis=0)
        best = int(np.argmax(scores))
        return {
            "entity": self.config.id2label[best],
            "score": float(scores[best]),
            "word": self._join([piece["word"] for piece in pieces]),
            "start": pieces[0]["start"],
            "end": pieces[-1]["end"],
        }

    def _group(self, entities: list[dict]) -> list[dict]:
        """Merges adjacent entities of the same type; a ``B-`` label always starts a new one."""
        groups: list[dict] = []
        current: list[dict] = []
        for entity in entities:
            begins, kind = _tag(entity["entity"])
            if current and (begins or kind != _tag(current[-1]["entity"])[1]):
                groups.append(self._merge(current))
                current = []
            current.append(entity)
        if current:
            groups.append(self._merge(current))
        return groups

    def _merge(self, entities: list[dict]) -> dict:
        return {
            "entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.nanmean([entity["score"] for entity in entities])),
            "word": self._join([entity["word"] for entity in entities]),
            "start": entities[0]["start"],
            "end": entities[-1]["end"],
        }

    def _join(self, tokens: list[str]) -> str:
        # The tokenizer's own WordPiece decoder glues "##" pieces to their word and tidies punctuation.
        return self.tokenizer.backend_tokenizer.decoder.decode(tokens)


def _tag(label: str) -> tuple[bool, str]:
    """``(begins, type)`` of a label: ``"B-PER"`` -> ``(True, "PER")``; ``"I-PER"`` and ``"PER"`` ->
    ``(False, "PER")``."""
    if label.startswith(("B-", "I-")):
        return label[0] == "B", label[2:]
    return False, label


def _resolve_overlaps(entities: list[dict]) -> list[dict]:
    """Entities of overlapping windows: of two that overlap, the longer (or higher-scoring) one stays."""
    kept: list[dict] = []
    for entity in sorted(entities, key=lambda e: e["start"]):
        last = kept[-1] if kept else None
        if last is not None and last["start"] <= entity["start"] < last["end"]:
            length, last_length = entity["end"] - entity["start"], last["end"] - last["start"]
            if length > last_length or (length == last_length and entity["score"] > last["score"]):
                kept[-1] = entity
        else:
            kept.append(entity)
    return kept
