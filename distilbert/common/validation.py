"""Input checks shared by the backends; each raises with a message naming the problem and the fix."""

from __future__ import annotations

from distilbert.common.config import DistilBertConfig


def check_inputs(config: DistilBertConfig, shape: tuple[int, ...] | None, has_ids: bool, has_embeds: bool,
                 id_min: int | None = None, id_max: int | None = None, embeds_shape=None,
                 expect_rank: int = 2) -> None:
    """Checks what can be known of the inputs without running the model.

    Args:
        shape: Shape of ``input_ids`` (or of ``inputs_embeds`` without its last axis).
        has_ids / has_embeds: Which of ``input_ids`` and ``inputs_embeds`` were given.
        id_min / id_max: Smallest and largest id, when the values are concrete.
        embeds_shape: Full shape of ``inputs_embeds``, when given.
        expect_rank: 2 for ``(batch, seq)``; 3 for multiple choice's ``(batch, choices, seq)``.
    """
    if has_ids and has_embeds:
        raise ValueError("pass either input_ids or inputs_embeds, not both")
    if not has_ids and not has_embeds:
        raise ValueError("pass input_ids or inputs_embeds")
    what = "input_ids" if has_ids else "inputs_embeds"
    if shape is not None:
        if len(shape) != expect_rank:
            layout = "(batch, seq_len)" if expect_rank == 2 else "(batch, num_choices, seq_len)"
            raise ValueError(f"{what} must have shape {layout}{'' if has_ids else ' + (dim,)'}, got {tuple(shape)}")
        seq_len = shape[-1]
        if seq_len is not None and seq_len > config.max_position_embeddings:
            raise ValueError(
                f"sequence length {seq_len} exceeds max_position_embeddings={config.max_position_embeddings}; "
                "truncate the input (tokenizer truncation=True, max_length=...)"
            )
        if seq_len == 0:
            raise ValueError(f"{what} has an empty sequence axis")
    if embeds_shape is not None and embeds_shape[-1] != config.dim:
        raise ValueError(f"inputs_embeds last axis must be dim={config.dim}, got {embeds_shape[-1]}")
    if id_min is not None and id_min < 0 or id_max is not None and id_max >= config.vocab_size:
        raise ValueError(
            f"input_ids must be in [0, vocab_size={config.vocab_size}), got values in [{id_min}, {id_max}]; "
            "is the tokenizer's vocabulary the model's?"
        )


def check_token_type_ids(any_nonzero: bool) -> None:
    """``token_type_ids`` are accepted for BERT tokenizers' sake, but DistilBERT has no segments."""
    if any_nonzero:
        raise ValueError(
            "token_type_ids has non-zero values, but DistilBERT has no segment embeddings; "
            "drop token_type_ids (or tokenize with return_token_type_ids=False)"
        )
