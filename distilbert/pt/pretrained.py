"""`DistilBertPreTrainedModel`: what the six PyTorch classes share besides their forward pass.

Initialisation as the reference, ``from_pretrained``/``save_pretrained`` in the Hugging Face layout
(any format :mod:`distilbert.common.checkpoint` reads), the attention implementation, gradient
checkpointing, weight tying and ``resize_token_embeddings``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from distilbert.common import outputs
from distilbert.common.checkpoint import load_state, save_state
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import sinusoidal_table
from distilbert.pt import attention
from distilbert.pt.loading import canonical_state, load_canonical_state, resolve_dtype

logger = logging.getLogger("distilbert")

for _cls in outputs.OUTPUT_CLASSES:  # pytree nodes, so that torch.export can return the output dataclasses
    try:
        torch.export.register_dataclass(_cls, serialized_type_name=f"distilbert.{_cls.__name__}")
    except ValueError:  # already registered
        pass


def _as_config(config: Any) -> DistilBertConfig:
    if isinstance(config, DistilBertConfig):
        return config
    if hasattr(config, "to_dict"):  # a transformers DistilBertConfig, for drop-in use
        return DistilBertConfig.from_dict(config.to_dict())
    raise TypeError(f"config must be a DistilBertConfig, got {type(config).__name__}")


class DistilBertPreTrainedModel(nn.Module):
    """Base of the six DistilBERT classes: config, initialisation, loading and saving.

    Args:
        config: A :class:`distilbert.DistilBertConfig` (a transformers config is converted).
        attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.

    Example:
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertModel
        >>> model = DistilBertModel(DistilBertConfig(n_layers=1, dim=32, n_heads=2, hidden_dim=64))
        >>> model.num_parameters() > 0
        True
    """

    task = "base"
    base_model_prefix = "distilbert"
    supports_gradient_checkpointing = True

    def __init__(self, config: DistilBertConfig, attn_implementation: str | None = None):
        super().__init__()
        self.config = _as_config(config)
        self._requested_attn = attn_implementation

    # ---------------------------------------------------------------------------- initialisation
    def post_init(self) -> None:
        """Initialises every weight as the reference does, ties the LM projector, sets attention."""
        self.apply(self._init_weights)
        self.tie_weights()
        self.set_attn_implementation(self._requested_attn)

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, std)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif hasattr(module, "position_embeddings") and self.config.sinusoidal_pos_embds:
                self._set_sinusoidal(module.position_embeddings)

    @staticmethod
    def _set_sinusoidal(embedding: nn.Embedding) -> None:
        table = sinusoidal_table(*embedding.weight.shape)  # (P, dim)
        with torch.no_grad():
            embedding.weight.copy_(torch.from_numpy(table))
        embedding.weight.requires_grad_(False)  # a fixed table, never trained

    def tie_weights(self) -> None:
        """Shares the masked-LM projector with the word embeddings when ``tie_word_embeddings``."""
        out = self.get_output_embeddings()
        if out is not None and self.config.tie_word_embeddings:
            out.weight = self.get_input_embeddings().weight

    # ---------------------------------------------------------------------------------- accessors
    @property
    def base_model(self) -> nn.Module:
        return getattr(self, self.base_model_prefix, self)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.word_embeddings

    def set_input_embeddings(self, embeddings: nn.Embedding) -> None:
        self.base_model.embeddings.word_embeddings = embeddings

    def get_output_embeddings(self) -> nn.Linear | None:
        return getattr(self, "vocab_projector", None)

    def get_position_embeddings(self) -> nn.Embedding:
        return self.base_model.embeddings.position_embeddings

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Parameter count, shared (tied) tensors counted once."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def _flags(self, output_attentions, output_hidden_states, return_dict) -> tuple[bool, bool, bool]:
        """The call's output flags, unset ones from the config (as the reference)."""
        return outputs.output_flags(self.config, output_attentions, output_hidden_states, return_dict)

    def _head_mask(self, head_mask: torch.Tensor | None) -> torch.Tensor | None:
        """``(H,)`` or ``(layers, H)`` to ``(layers, 1, H, 1, 1)`` in the model's dtype."""
        if head_mask is None:
            return None
        if head_mask.dim() == 1:
            head_mask = head_mask.expand(self.config.n_layers, -1)  # (layers, H)
        return head_mask.to(self.dtype)[:, None, :, None, None]  # (layers, 1, H, 1, 1)

    def _set_config(self, config: DistilBertConfig) -> None:
        for module in self.modules():
            if isinstance(module, DistilBertPreTrainedModel):
                module.config = config

    # ----------------------------------------------------------------- attention and checkpointing
    @property
    def attn_implementation(self) -> str:
        return self._attn_implementation

    def set_attn_implementation(self, name: str | None) -> None:
        """Switches every layer to ``"eager"``, ``"sdpa"`` or ``"flash_attention_2"`` (same weights)."""
        name = attention.check_implementation(name)
        for module in self.modules():
            if hasattr(module, "attn_implementation") and not isinstance(module, DistilBertPreTrainedModel):
                module.attn_implementation = name
            if isinstance(module, DistilBertPreTrainedModel):
                module._attn_implementation = name

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.base_model.transformer.gradient_checkpointing

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recomputes each block's activations in the backward pass (training only) to save memory."""
        self.base_model.transformer.gradient_checkpointing = True
        self.base_model.transformer.checkpoint_kwargs = dict(gradient_checkpointing_kwargs or {})

    def gradient_checkpointing_disable(self) -> None:
        self.base_model.transformer.gradient_checkpointing = False

    # ------------------------------------------------------------------------ resizing the vocabulary
    def resize_token_embeddings(self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None,
                                mean_resizing: bool = True) -> nn.Embedding:
        """Grows or shrinks the vocabulary; kept rows are unchanged, the LM head follows.

        Args:
            new_num_tokens: New vocabulary size (None: only round up to ``pad_to_multiple_of``).
            pad_to_multiple_of: Round the size up to a multiple of this.
            mean_resizing: New rows drawn around the old rows' mean and covariance (as the reference);
                False: normal(0, initializer_range).

        Returns:
            The word-embedding module.
        """
        old = self.get_input_embeddings()
        if new_num_tokens is None and pad_to_multiple_of is None:
            return old
        n = old.num_embeddings if new_num_tokens is None else int(new_num_tokens)
        if pad_to_multiple_of is not None:
            n = -(-n // int(pad_to_multiple_of)) * int(pad_to_multiple_of)
        if n <= 0:
            raise ValueError(f"new_num_tokens must be positive, got {n}")
        if n == old.num_embeddings:
            return old
        pad = self.config.pad_token_id
        pad = pad if pad is not None and pad < n else None
        new = nn.Embedding(n, old.embedding_dim, padding_idx=pad, device=old.weight.device, dtype=old.weight.dtype)
        self._copy_rows(old.weight, new.weight, mean_resizing)
        new.weight.requires_grad_(old.weight.requires_grad)
        new.train(old.training)  # a new module starts in training mode; eval mode picks the fused kernels
        self.set_input_embeddings(new)
        head = self.get_output_embeddings()
        if head is not None:
            new_head = nn.Linear(head.in_features, n, device=head.weight.device, dtype=head.weight.dtype)
            k = min(n, head.out_features)
            with torch.no_grad():
                if not self.config.tie_word_embeddings:
                    self._copy_rows(head.weight, new_head.weight, mean_resizing)
                new_head.bias.zero_()
                new_head.bias[:k] = head.bias[:k]
                if n > k and mean_resizing and not self.config.tie_word_embeddings:
                    new_head.bias[k:] = head.bias.float().mean().to(head.bias.dtype)
            self.vocab_projector = new_head.train(head.training)
        data = self.config.to_dict()
        data["vocab_size"] = n
        if pad is None and self.config.pad_token_id is not None:
            data["pad_token_id"] = None
        self._set_config(DistilBertConfig.from_dict(data))
        self.tie_weights()
        return self.get_input_embeddings()

    def _copy_rows(self, old: torch.Tensor, new: torch.Tensor, mean_resizing: bool) -> None:
        k = min(old.shape[0], new.shape[0])
        with torch.no_grad():
            new[:k] = old[:k]
            added = new.shape[0] - k
            if added <= 0:
                return
            if not mean_resizing:
                rows = torch.randn(added, new.shape[1], device=new.device) * self.config.initializer_range
                new[k:] = rows.to(new.dtype)
                return
            rows = old.float()
            mean = rows.mean(0)  # (dim,)
            centred = rows - mean  # (V, dim)
            cov = centred.T @ centred / rows.shape[0] * 1e-9  # (dim, dim)
            try:
                dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
                new[k:] = dist.sample((added,)).to(new.dtype)
            except (ValueError, RuntimeError):  # covariance not positive definite: the mean itself
                new[k:] = mean.to(new.dtype)

    # -------------------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *,
                        config: DistilBertConfig | None = None,
                        dtype=None, torch_dtype=None, attn_implementation: str | None = None,
                        ignore_mismatched_sizes: bool = False, weight_format: str | None = None,
                        from_tf: bool = False, from_flax: bool = False, output_loading_info: bool = False,
                        **config_overrides):
        """Loads a checkpoint directory or hub id in any Hugging Face format.

        Args:
            pretrained_model_name_or_path: Local directory or hub id.
            config: Use this config instead of the checkpoint's ``config.json``.
            dtype: ``torch.float32`` (default), ``torch.float16``, ``torch.bfloat16``, a name, or ``"auto"``
                (the checkpoint's ``torch_dtype``). ``torch_dtype`` is accepted as an alias.
            attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.
            ignore_mismatched_sizes: Re-initialise head tensors whose shape differs (a new ``num_labels``).
            weight_format: Read only this format (``"safetensors"``, ``"pytorch"``, ``"tf"``, ``"flax"``, ...).
            from_tf / from_flax: Shorthand for ``weight_format="tf"`` / ``"flax"``.
            output_loading_info: Also return the :class:`~distilbert.common.checkpoint.LoadReport` (file and
                format read, tensors newly initialised or left unused), which also reads as the reference's
                dict: ``info["missing_keys"]``, ``["unexpected_keys"]``, ``["mismatched_keys"]``.
            **config_overrides: Config fields to change, e.g. ``num_labels=3`` or ``id2label={...}``.

        Example:
            >>> model = DistilBertForSequenceClassification.from_pretrained(  # doctest: +SKIP
            ...     "distilbert-base-uncased", num_labels=3)
        """
        if from_tf or from_flax:
            weight_format = weight_format or ("tf" if from_tf else "flax")
        if config is None:
            config = DistilBertConfig.from_pretrained(pretrained_model_name_or_path, **config_overrides)
        else:
            config = _as_config(config)
            config = config.replace(**config_overrides) if config_overrides else config
        target = resolve_dtype(dtype if dtype is not None else torch_dtype, config)
        model = cls(config, attn_implementation=attn_implementation)
        state, report = load_state(pretrained_model_name_or_path, config, cls.task, framework="pt",
                                   weight_format=weight_format, ignore_mismatched_sizes=ignore_mismatched_sizes)
        load_canonical_state(model, state, skip=report.new)
        if target is not None:
            model.to(target)
        model.eval()
        return (model, report) if output_loading_info else model

    def save_pretrained(self, save_directory: str | os.PathLike, *, weight_format: str = "safetensors",
                        max_shard_size: int | str | None = None, safe_serialization: bool = True) -> str:
        """Writes ``config.json`` and the weights in the Hugging Face layout; returns the weight file.

        Args:
            save_directory: Target directory (created if needed).
            weight_format: ``"safetensors"`` (default), ``"tf"`` (``tf_model.h5``) or ``"flax"``
                (``flax_model.msgpack``); every format loads into every backend.
            max_shard_size: Split the weights into shards of at most this size (bytes or ``"200MB"``).
            safe_serialization: Accepted for compatibility; only False (pickle) is refused.
        """
        if not safe_serialization:
            raise ValueError("pickle checkpoints are not written; use the default safetensors format")
        if os.path.isfile(save_directory):
            raise NotADirectoryError(f"{os.fspath(save_directory)!r} is a file; pass a directory")
        data = self.config.to_dict()
        data["dtype"] = str(self.dtype).removeprefix("torch.")  # the key transformers 4.57 writes
        data.pop("torch_dtype", None)
        config = DistilBertConfig.from_dict(data)
        state = canonical_state(self)
        return save_state(save_directory, state, config, self.task, framework="pt", weight_format=weight_format,
                          max_shard_size=max_shard_size)

    def canonical_state(self) -> dict[str, np.ndarray]:
        """Every tensor as a numpy array under its canonical (Hugging Face PyTorch) name."""
        return canonical_state(self)

    def load_canonical_state(self, state, skip=()) -> None:
        """Copies a canonical numpy state into this model, strictly (see :mod:`distilbert.pt.loading`)."""
        load_canonical_state(self, state, skip)
