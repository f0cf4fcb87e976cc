"""`DistilBertPreTrainedModel`: what the six PyTorch classes share besides their forward pass.

Initialisation as the reference, ``from_pretrained``/``save_pretrained`` in the Hugging Face layout
(any format :mod:`distilbert.common.checkpoint` reads), the attention implementation, gradient
checkpointing, weight tying and ``resize_token_embeddings``; and the pair of functions between a model and
a canonical numpy state, :func:`canonical_state` and :func:`load_canonical_state`, that every load, save
and conversion uses. PyTorch's state-dict keys and layouts *are* the canonical ones (the ``pt`` column of
the weight table), so the mapping is a strict copy. bfloat16 travels through numpy as ``ml_dtypes.bfloat16``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping

import ml_dtypes
import numpy as np
import torch
from torch import nn

from distilbert.common import outputs
from distilbert.common.checkpoint import load_state, save_state, source_framework
from distilbert.common.config import DistilBertConfig
from distilbert.common.names import TIED, check_state, sinusoidal_table, weight_table
from distilbert.common.validation import as_config
from distilbert.pt import ops

logger = logging.getLogger("distilbert")

for _cls in outputs.OUTPUT_CLASSES:  # pytree nodes, so that torch.export can return the output dataclasses
    try:
        torch.export.register_dataclass(_cls, serialized_type_name=f"distilbert.{_cls.__name__}")
    except ValueError:  # already registered
        pass


class DistilBertPreTrainedModel(nn.Module):
    """Base of the six DistilBERT classes: config, initialisation, loading and saving.

    Args:
        config: A :class:`distilbert.DistilBertConfig`, its dict, or a transformers config.
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
    # True: the encoder runs on the real tokens of a padded batch only (DistilBertModel.forward's
    # ``skip_padding``); the outputs at padded positions are then 0. Set it on a model to apply it to
    # every call (a head's setting is handed to its encoder).
    skip_padding = False

    def __init__(self, config: DistilBertConfig, attn_implementation: str | None = None):
        super().__init__()
        self.config = as_config(config)
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
        name = ops.check_implementation(name)
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
    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
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
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        config: DistilBertConfig | None = None,
        dtype=None,
        torch_dtype=None,
        attn_implementation: str | None = None,
        ignore_mismatched_sizes: bool = False,
        weight_format: str | None = None,
        from_pt: bool = False,
        from_tf: bool = False,
        from_flax: bool = False,
        output_loading_info: bool = False,
        **config_overrides,
    ):
        """Loads a checkpoint directory or hub id in any Hugging Face format.

        Args:
            pretrained_model_name_or_path: Local directory or hub id.
            config: Use this config instead of the checkpoint's ``config.json``.
            dtype: ``torch.float32`` (default), ``torch.float16``, ``torch.bfloat16``, a name, or ``"auto"``
                (the checkpoint's ``torch_dtype``). ``torch_dtype`` is accepted as an alias.
            attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.
            ignore_mismatched_sizes: Re-initialise head tensors whose shape differs (a new ``num_labels``).
            weight_format: Read only this format (``"safetensors"``, ``"pytorch"``, ``"tf"``, ``"flax"``, ...).
            from_pt / from_tf / from_flax: Read that framework's weight file first when the directory has
                several (every format loads without them; none reaches ``config.json``).
            output_loading_info: Also return the :class:`~distilbert.common.checkpoint.LoadReport` (file and
                format read, tensors newly initialised or left unused), which also reads as the reference's
                dict: ``info["missing_keys"]``, ``["unexpected_keys"]``, ``["mismatched_keys"]``.
            **config_overrides: Config fields to change, e.g. ``num_labels=3`` or ``id2label={...}``.

        Example:
            >>> model = DistilBertForSequenceClassification.from_pretrained(  # doctest: +SKIP
            ...     "distilbert-base-uncased", num_labels=3)
        """
        if config is None:
            config = DistilBertConfig.from_pretrained(pretrained_model_name_or_path, **config_overrides)
        else:
            config = as_config(config)
            config = config.replace(**config_overrides) if config_overrides else config
        target = resolve_dtype(dtype if dtype is not None else torch_dtype, config)
        model = cls(config, attn_implementation=attn_implementation)
        state, report = load_state(
            pretrained_model_name_or_path,
            config,
            cls.task,
            framework="pt",
            weight_format=weight_format,
            ignore_mismatched_sizes=ignore_mismatched_sizes,
            source=source_framework(from_pt, from_tf, from_flax),
        )
        load_canonical_state(model, state, skip=report.new)
        if target is not None:
            model.to(target)
        model.eval()
        return (model, report) if output_loading_info else model

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        weight_format: str = "safetensors",
        max_shard_size: int | str | None = None,
        safe_serialization: bool = True,
    ) -> str:
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
        return save_state(
            save_directory,
            state,
            config,
            self.task,
            framework="pt",
            weight_format=weight_format,
            max_shard_size=max_shard_size,
        )

    def canonical_state(self) -> dict[str, np.ndarray]:
        """Every tensor as a numpy array under its canonical (Hugging Face PyTorch) name."""
        return canonical_state(self)

    def load_canonical_state(self, state, skip=()) -> None:
        """Copies a canonical numpy state into this model, strictly (see :func:`load_canonical_state`)."""
        load_canonical_state(self, state, skip)


# ------------------------------------------------------------------------------- canonical state
DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


def resolve_dtype(dtype, config=None) -> torch.dtype | None:
    """A ``torch.dtype`` from a dtype, its name, or ``"auto"`` (the config's ``torch_dtype``/``dtype``)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        return dtype
    if dtype == "auto":
        extra = config.extra if config is not None else {}
        name = extra.get("dtype") or extra.get("torch_dtype")
        return resolve_dtype(name) if name else None
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use torch.float32, torch.float16, torch.bfloat16 or 'auto'")
    return DTYPES[name]


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A CPU numpy copy of ``tensor``; bfloat16 becomes ``ml_dtypes.bfloat16``."""
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.uint16).numpy().view(ml_dtypes.bfloat16).copy()
    return tensor.numpy().copy()


def to_torch(array: np.ndarray) -> torch.Tensor:
    """A tensor sharing ``array``'s data where it can; ``ml_dtypes.bfloat16`` becomes ``torch.bfloat16``."""
    array = np.ascontiguousarray(array)
    if array.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(array.view(np.uint16)).view(torch.bfloat16)
    if not array.flags.writeable:
        array = array.copy()
    return torch.from_numpy(array)


def canonical_state(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Every tensor of the weight table, canonical names, as numpy arrays (tied rows share one array)."""
    table = weight_table(model.config, model.task)
    params = model.state_dict(keep_vars=True)
    extra = sorted(set(params) - {spec.names["pt"] for spec in table})
    if extra:
        raise RuntimeError(f"model holds tensors the weight table does not list: {extra}")
    out: dict[str, np.ndarray] = {}
    for spec in table:
        if spec.kind == TIED and spec.tied_to in out:
            out[spec.name] = out[spec.tied_to]
        else:
            out[spec.name] = to_numpy(params[spec.names["pt"]])
    return out


def load_canonical_state(model: torch.nn.Module, state: Mapping[str, np.ndarray], skip: Iterable[str] = ()) -> None:
    """Copies a canonical state into ``model``'s tensors (cast to their dtype), strictly.

    Args:
        model: A ``DistilBertPreTrainedModel``.
        state: Canonical name -> array, as :func:`distilbert.common.checkpoint.load_state` returns.
        skip: Names left as they are (a new head): absent from ``state``, they keep their current values.

    Raises:
        WeightMismatchError: naming every missing, unexpected and mis-shaped tensor; nothing is copied.
    """
    table = weight_table(model.config, model.task)
    params = model.state_dict(keep_vars=True)
    check_state({name: np.shape(array) for name, array in state.items()}, table, skip)
    with torch.no_grad():
        for spec in table:
            if spec.name not in state or spec.kind == TIED:  # a tied row shares its target's storage
                continue
            params[spec.names["pt"]].copy_(to_torch(state[spec.name]))
