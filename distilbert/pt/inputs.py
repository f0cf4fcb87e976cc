"""Input checks of the PyTorch classes, on top of :mod:`distilbert.common.validation`'s messages."""

from __future__ import annotations

import torch

from distilbert.common.validation import check_inputs as _common_check
from distilbert.common.validation import check_token_type_ids


def check_inputs(config, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids, rank=2):
    """Validates the inputs; value checks (ids in range, zero token types) run outside compilation."""
    _common_check(config, None, input_ids is not None, inputs_embeds is not None)
    x = input_ids if input_ids is not None else inputs_embeds
    name = "input_ids" if input_ids is not None else "inputs_embeds"
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if input_ids is not None and (input_ids.is_floating_point() or input_ids.is_complex()
                                  or input_ids.dtype == torch.bool):
        raise TypeError(f"input_ids must be an integer tensor (torch.long), got {input_ids.dtype}")
    if inputs_embeds is not None and (not inputs_embeds.is_floating_point() or inputs_embeds.dim() != rank + 1):
        raise ValueError(f"inputs_embeds must be a floating tensor of rank {rank + 1}, got "
                         f"{inputs_embeds.dtype} of shape {tuple(inputs_embeds.shape)}")
    shape = tuple(x.shape) if input_ids is not None else tuple(x.shape[:-1])
    embeds_shape = tuple(inputs_embeds.shape) if inputs_embeds is not None else None
    _common_check(config, shape, input_ids is not None, inputs_embeds is not None, embeds_shape=embeds_shape,
                 expect_rank=rank)
    for what, t in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"{what} must have the shape of the input {shape}, got {tuple(t.shape)}")
    if position_ids is not None and (position_ids.dim() != rank or position_ids.shape[-1] != shape[-1]
                                     or position_ids.is_floating_point()):
        raise ValueError(f"position_ids must be integers of shape {shape} (or 1 on the batch axes), "
                         f"got {position_ids.dtype} {tuple(position_ids.shape)}")
    if torch.compiler.is_compiling():
        return
    if input_ids is not None:
        lo, hi = torch.aminmax(input_ids)
        _common_check(config, shape, True, False, id_min=int(lo), id_max=int(hi), expect_rank=rank)
    if token_type_ids is not None:
        check_token_type_ids(bool(token_type_ids.any()))
    if position_ids is not None and bool(((position_ids < 0) | (position_ids >= config.max_position_embeddings)).any()):
        raise ValueError(f"position_ids must be in [0, max_position_embeddings={config.max_position_embeddings})")
