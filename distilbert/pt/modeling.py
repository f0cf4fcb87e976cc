"""DistilBERT in PyTorch: the encoder and its five task heads, numerically the reference's.

Module tree and names are the Hugging Face PyTorch ones (and those of the TF and Flax backends), so
``state_dict()`` keys are the canonical tensor names. Shapes: B batch, C choices, T tokens,
H heads, D head size, V vocabulary, L labels.
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from distilbert.common import outputs as out
from distilbert.common.losses import problem_type_for
from distilbert.common.validation import check_head_config
from distilbert.pt import losses
from distilbert.pt.inputs import check_inputs as _check
from distilbert.pt.inputs import check_labels
from distilbert.pt.ops import eager_attention, flash_attention, in_graph, linear, project_qkv, sdpa_attention
from distilbert.pt.pretrained import DistilBertPreTrainedModel


class Embeddings(nn.Module):
    """Word plus position embeddings, LayerNorm, dropout (DistilBERT has no token-type embeddings)."""

    def __init__(self, config):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.dim, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.dim)
        self.LayerNorm = nn.LayerNorm(config.dim, eps=1e-12)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, input_ids=None, inputs_embeds=None, position_ids=None):
        x = self.word_embeddings(input_ids) if input_ids is not None else inputs_embeds  # (B, T, dim)
        if position_ids is None:
            position_ids = torch.arange(x.shape[1], device=x.device)  # (T,)
        x = x + self.position_embeddings(position_ids)  # (B, T, dim)
        return self.dropout(self.LayerNorm(x))  # (B, T, dim)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with the four projections ``q_lin``, ``k_lin``, ``v_lin``, ``out_lin``."""

    def __init__(self, config):
        super().__init__()
        self.n_heads, self.head_dim = config.n_heads, config.head_dim
        self.dropout_p = config.attention_dropout
        self.attn_implementation = "sdpa"
        self.q_lin = nn.Linear(config.dim, config.dim)
        self.k_lin = nn.Linear(config.dim, config.dim)
        self.v_lin = nn.Linear(config.dim, config.dim)
        self.out_lin = nn.Linear(config.dim, config.dim)
        self.qkv: nn.Module | None = None  # distilbert.pt.quantize: q_lin, k_lin, v_lin as one int8 product

    def forward(self, x, mask=None, head_mask=None, output_attentions=False, residual=None, queries=None, packing=None):
        """Returns ``(out_lin(context) [+ residual], probabilities or None)``.

        ``queries`` ``(B, Tq, dim)``: attend from these rows only (keys and values are still every row of
        ``x``); the output and the probabilities then have ``Tq`` rows. None: every row of ``x``.
        ``packing`` (a :class:`Packing`): ``x`` is ``(1, N, dim)``, the batch's real tokens only, and so
        is the output (``(B, Tq, dim)`` with ``queries``). The projections run on those rows; attention
        runs sequence by sequence on their real tokens (:meth:`Packing.attend`), or, where the
        probabilities, a head mask, queries or flash attention need the padded layout, on that.
        """
        C = x.shape[-1]
        B, T = (x.shape[0], x.shape[1]) if packing is None else (packing.batch, packing.length)
        Tq = T if queries is None else queries.shape[1]
        p = self.dropout_p if self.training else 0.0
        impl = self.attn_implementation
        explicit = impl == "eager" or output_attentions or head_mask is not None  # fused kernels expose no weights

        if self.qkv is not None:  # one int8 product for all three
            q, k, v = self.qkv(x).split(C, dim=-1)  # (B, T, dim) each (packed: (1, N, dim))
        elif queries is None:
            q, k, v = project_qkv(self, x, (self.q_lin, self.k_lin, self.v_lin))  # (B, T, dim) each
        else:
            q, k, v = linear(queries, self.q_lin), linear(x, self.k_lin), linear(x, self.v_lin)  # (B, Tq|T, dim)
        segmented = not (output_attentions or head_mask is not None or impl == "flash_attention_2")
        if packing is not None and queries is None and segmented:  # attention within each sequence
            ctx = packing.attend(q, k, v, self.n_heads, p, eager=impl == "eager")  # (1, N, dim)
            return linear(ctx, self.out_lin, residual=residual, consume=True), None  # (1, N, dim)
        if packing is not None:  # the padded layout, zeros at the padded positions (masked out below)
            if queries is None or self.qkv is not None:  # q came from x's rows (else from the queries)
                q = packing.pad(q)  # (B, T, dim)
            k, v = packing.pad(k), packing.pad(v)  # (B, T, dim)
        if self.qkv is not None and queries is not None:
            q = q[:, :Tq]  # (B, Tq, dim): the query rows sliced out of the joint product

        def heads(t):
            return t.view(B, -1, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T|Tq, D)

        q, k, v = heads(q), heads(k), heads(v)  # (B, H, Tq, D), (B, H, T, D), (B, H, T, D)
        weights = None
        if explicit:
            ctx, weights = eager_attention(q, k, v, mask, p, head_mask)  # (B, H, Tq, D), (B, H, Tq, T)
        elif impl == "sdpa":
            ctx = sdpa_attention(q, k, v, mask, p)  # (B, H, Tq, D)
        else:
            ctx = flash_attention(q, k, v, mask, p)  # (B, H, T, D): flash blocks never pass queries
        ctx = ctx.transpose(1, 2).reshape(B, Tq, C)  # (B, Tq, dim)
        if packing is not None and queries is None:
            ctx = packing.pack(ctx)  # (1, N, dim): the real tokens' rows
        # ctx is this block's own (a copy or the kernel's output): the product may overwrite it
        return linear(ctx, self.out_lin, residual=residual, consume=True), weights  # (B, Tq, dim) or (1, N, dim)


class FFN(nn.Module):
    """Position-wise feed-forward: ``lin1``, activation, ``lin2``, dropout (then ``+ residual``, if given)."""

    def __init__(self, config):
        super().__init__()
        self.lin1 = nn.Linear(config.dim, config.hidden_dim)
        self.lin2 = nn.Linear(config.hidden_dim, config.dim)
        self.activation = config.activation
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x, residual=None):
        h = linear(x, self.lin1, self.activation)  # (B, T, hidden_dim)
        if residual is not None and not self.training:  # no dropout: the add fuses into lin2
            return linear(h, self.lin2, residual=residual, consume=True)  # (B, T, dim)
        y = self.dropout(self.lin2(h))  # (B, T, dim)
        return y if residual is None else y + residual


class TransformerBlock(nn.Module):
    """Post-norm block: ``sa_layer_norm(x + attention(x))``, then ``output_layer_norm(x + ffn(x))``."""

    def __init__(self, config):
        super().__init__()
        self.attention = MultiHeadSelfAttention(config)
        self.sa_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)
        self.ffn = FFN(config)
        self.output_layer_norm = nn.LayerNorm(config.dim, eps=1e-12)

    def forward(self, x, mask=None, head_mask=None, output_attentions=False, first_token_only=False, packing=None):
        """``first_token_only``: the output is the first token's row alone, ``(B, 1, dim)`` (see ``Transformer``).

        ``packing``: ``x`` is ``(1, N, dim)``, the real tokens only (see :class:`Packing`), and so is the
        output, unless ``first_token_only`` (then ``(B, 1, dim)`` as without it).
        """
        # Contiguous: oneDNN's fused kernels take dense rows; the copy is B * dim numbers.
        first = None
        if first_token_only:
            first = (x if packing is None else packing.pad(x))[:, :1].contiguous()  # (B, 1, dim)
        residual = x if first is None else first
        sa, weights = self.attention(x, mask, head_mask, output_attentions, residual, first, packing)
        x = self.sa_layer_norm(sa)  # x + attention: (B, T|1, dim)
        x = self.output_layer_norm(self.ffn(x, residual=x))  # (B, T|1, dim)
        return x, weights


class Transformer(nn.Module):
    """The stack of ``n_layers`` blocks, collecting hidden states and attentions on request.

    ``first_token_only=True`` (the classifier heads, which read the first token alone) runs the last block
    for the first token's row only: its keys and values still come from every token, but its query,
    ``out_lin``, LayerNorms and FFN see one row, so it costs about 2/12 of a full block. The output is
    then ``(B, 1, dim)``, the full pass's first row. It is ignored when hidden states or attentions are
    asked for (they hold every row) and with ``flash_attention_2`` (its kernel takes all rows).

    ``packing`` (a :class:`Packing`, ``DistilBertModel``'s ``skip_padding``): ``x`` holds the real tokens
    only, ``(1, N, dim)``; every block's products, LayerNorms and FFN run on those rows, and the outputs
    are scattered back to ``(B, T, dim)`` with zeros at the padded positions.
    """

    def __init__(self, config):
        super().__init__()
        self.layer = nn.ModuleList([TransformerBlock(config) for _ in range(config.n_layers)])
        self.gradient_checkpointing = False
        self.checkpoint_kwargs: dict = {}

    def forward(
        self,
        x,
        mask=None,
        head_mask=None,
        output_attentions=False,
        output_hidden_states=False,
        first_token_only=False,
        packing=None,
    ):
        def padded(t):
            return t if packing is None else packing.pad(t)  # (B, T, dim)

        hidden, attentions = ((padded(x),) if output_hidden_states else None), (() if output_attentions else None)
        last = len(self.layer) - 1
        flash = self.layer[last].attention.attn_implementation == "flash_attention_2"
        first_token_only = first_token_only and not (output_attentions or output_hidden_states or flash)
        for i, layer in enumerate(self.layer):
            hm = None if head_mask is None else head_mask[i]
            first = first_token_only and i == last
            if self.gradient_checkpointing and self.training:
                kw = {"use_reentrant": False, **self.checkpoint_kwargs}
                x, weights = checkpoint(layer, x, mask, hm, output_attentions, first, packing, **kw)  # (B, T|1, dim)
            else:
                x, weights = layer(x, mask, hm, output_attentions, first, packing)  # (B, T|1, dim) or (1, N, dim)
            if output_hidden_states:
                hidden = hidden + (padded(x),)
            if output_attentions:
                attentions = attentions + (weights,)
        if packing is not None:  # padded positions are 0 (the first token's, too, where it is padding)
            x = x * packing.first_is_real[:, :, None] if first_token_only else padded(x)  # (B, 1|T, dim)
        return out.BaseModelOutput(last_hidden_state=x, hidden_states=hidden, attentions=attentions)


class Packing:
    """Where a padded batch's real tokens sit: ``pack`` takes them out, ``pad`` puts them back.

    ``rows`` ``(N,)``: the flat indices (into ``B * T``) of the tokens whose ``attention_mask`` is not 0.
    ``pack(t)``: ``(B, T, C)`` -> ``(1, N, C)``; ``pad(t)``: ``(1, N, C)`` -> ``(B, T, C)``, zeros at the
    padded positions. Both are differentiable (index_select and index_copy).
    """

    def __init__(self, attention_mask: torch.Tensor):
        self.batch, self.length = attention_mask.shape
        real = attention_mask != 0  # (B, T)
        self.rows = real.reshape(-1).nonzero().squeeze(1)  # (N,)
        # Each sequence's real tokens are consecutive packed rows (in batch order), and neighbouring
        # sequences of one length make one run of rows, attended as one batch: (first row, length,
        # sequences) per run, over the sequences that have any real token.
        lengths = real.sum(dim=1).tolist()  # B ints
        starts = itertools.accumulate(lengths[:-1], initial=0)
        self.runs: list[tuple[int, int, int]] = []
        for start, n in zip(starts, lengths):
            if n == 0:
                continue
            if self.runs and self.runs[-1][1] == n:
                first, _, count = self.runs[-1]
                self.runs[-1] = (first, n, count + 1)
            else:
                self.runs.append((start, n, 1))
        self.first_is_real = real[:, :1]  # (B, 1): whether each sequence's first token is a real one

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        return t.reshape(self.batch * self.length, t.shape[-1]).index_select(0, self.rows)[None]  # (1, N, C)

    def attend(self, q, k, v, n_heads: int, dropout_p: float, eager: bool = False) -> torch.Tensor:
        """Softmax attention within each sequence's real tokens; ``q``, ``k``, ``v`` and the result
        ``(1, N, dim)``.

        The same numbers as attention over the padded batch with its key mask, at the real query rows:
        the padded keys get no weight there, and the padded queries are never computed. One kernel call
        per run of neighbouring sequences of one length (``eager``: the explicit softmax, else PyTorch's
        ``scaled_dot_product_attention``).
        """
        dim = q.shape[-1]
        parts = []
        for start, n, count in self.runs:
            rows = slice(start, start + n * count)
            qs, ks, vs = (t[0, rows].view(count, n, n_heads, -1).transpose(1, 2) for t in (q, k, v))
            if eager:  # (count, H, n, D) each
                ctx, _ = eager_attention(qs, ks, vs, None, dropout_p)
            else:
                ctx = F.scaled_dot_product_attention(qs, ks, vs, dropout_p=dropout_p)
            parts.append(ctx.transpose(1, 2).reshape(n * count, dim))  # (count * n, dim)
        return (torch.cat(parts) if parts else q[0, :0])[None]  # (1, N, dim)

    def pad(self, t: torch.Tensor) -> torch.Tensor:
        flat = t.new_zeros(self.batch * self.length, t.shape[-1]).index_copy(0, self.rows, t.reshape(-1, t.shape[-1]))
        return flat.view(self.batch, self.length, t.shape[-1])  # (B, T, C)


class DistilBertModel(DistilBertPreTrainedModel):
    """The bare DistilBERT encoder: token ids in, contextual vectors out.

    Args:
        config: Model hyper-parameters.
        attn_implementation: ``"sdpa"`` (default), ``"eager"`` or ``"flash_attention_2"``.

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertModel
        >>> model = DistilBertModel(DistilBertConfig(n_layers=2, dim=32, n_heads=4, hidden_dim=64)).eval()
        >>> model(torch.tensor([[101, 7592, 102]])).last_hidden_state.shape
        torch.Size([1, 3, 32])
    """

    def __init__(self, config, attn_implementation=None):
        super().__init__(config, attn_implementation)
        self.embeddings = Embeddings(self.config)
        self.transformer = Transformer(self.config)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        token_type_ids=None,
        first_token_only=False,
        skip_padding=None,
    ):
        """Encodes a batch.

        Args:
            input_ids: ``(B, T)`` token ids (or pass ``inputs_embeds`` ``(B, T, dim)``).
            attention_mask: ``(B, T)``, 1 for tokens, 0 for padding.
            head_mask: ``(H,)`` or ``(n_layers, H)`` multipliers of the attention probabilities.
            output_attentions / output_hidden_states / return_dict: As the reference.
            position_ids: ``(T,)``, ``(1, T)`` or ``(B, T)`` positions (default ``0..T-1``).
            token_type_ids: Accepted for BERT tokenizers' output; must be all zeros.
            first_token_only: Compute only the first token's row in the last block (fewer FLOPs, same
                numbers): ``last_hidden_state`` is then ``(B, 1, dim)``. Ignored when hidden states or
                attentions are asked for, and with ``flash_attention_2``.
            skip_padding: Run the blocks on the real tokens only (where ``attention_mask`` is not 0): the
                products, LayerNorms and FFN skip the padding, which in a padded batch is often a quarter
                of the work. The real tokens' outputs are the same as without it (to float rounding); the
                outputs at padded positions, which the reference computes but nothing should read, are 0
                (and the attention probabilities of padded query rows are not the reference's). None: the
                model's ``skip_padding`` attribute (False unless set).

        Inputs are checked by :mod:`distilbert.common.validation` (the same rules in every backend).
        """
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict
        )
        _check(self.config, input_ids, inputs_embeds, attention_mask, token_type_ids, position_ids, head_mask)
        x = self.embeddings(input_ids, inputs_embeds, position_ids)  # (B, T, dim)
        # Without padding the key mask masks nothing, and attention runs faster without one (the same
        # numbers). A graph (tracing, export, compile) keeps it: the graph serves padded batches too, and
        # skips no padding (the number of real tokens is data; a graph would fix it to the example's).
        graph = in_graph()
        real = None if attention_mask is None else attention_mask != 0  # (B, T)
        padded = real is not None and (graph or not bool(real.all()))
        mask = real[:, None, None, :] if padded else None  # (B, 1, 1, T)
        hm = self._head_mask(head_mask)
        skip = self.skip_padding if skip_padding is None else skip_padding
        packing = Packing(attention_mask) if skip and padded and not graph else None
        x = x if packing is None else packing.pack(x)  # (B, T, dim) or (1, N, dim)
        result = self.transformer(x, mask, hm, output_attentions, output_hidden_states, first_token_only, packing)
        return result if return_dict else result.to_tuple()


class _Head(DistilBertPreTrainedModel):
    """A task head over ``self.distilbert``; subclasses define ``_head(hidden, labels) -> (loss, logits)``."""

    output_class = out.MaskedLMOutput
    first_token_only = False  # True: the head reads the first token alone, so the last block computes only it

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        token_type_ids=None,
    ):
        """Runs the encoder and the head; ``labels`` (as the reference's) add the loss."""
        base = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            position_ids,
            token_type_ids,
        )
        # (B, 1) when the last block computed the first token only: the pooled heads' labels read only B
        check_labels(self.config, self.task, base.last_hidden_state.shape[:2], labels)
        loss, logits = self._head(base.last_hidden_state, labels)
        result = self.output_class(
            loss=loss, logits=logits, hidden_states=base.hidden_states, attentions=base.attentions
        )
        return result if self._flags(None, None, return_dict)[2] else result.to_tuple()

    def _encode(self, ids, mask, head_mask, embeds, attentions, hidden, positions, token_types) -> out.BaseModelOutput:
        args = (ids, mask, head_mask, embeds, attentions, hidden, True, positions, token_types)
        skip = True if self.skip_padding else None  # None: the encoder's own setting
        return self.distilbert(*args, first_token_only=self.first_token_only, skip_padding=skip)

    def _pool(self, h):
        """The first token through ``pre_classifier``, ReLU and dropout."""
        return self.dropout(F.relu(self.pre_classifier(h[:, 0])))  # (B, dim)


class DistilBertForMaskedLM(_Head):
    """DistilBERT with the masked-language-model head (projector tied to the word embeddings).

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertForMaskedLM
        >>> model = DistilBertForMaskedLM(DistilBertConfig(n_layers=1, dim=32, n_heads=4, hidden_dim=64)).eval()
        >>> model(torch.tensor([[101, 103, 102]])).logits.shape
        torch.Size([1, 3, 30522])
    """

    task = "masked_lm"

    def __init__(self, config, attn_implementation=None):
        super().__init__(config, attn_implementation)
        c = self.config
        self.distilbert = DistilBertModel(c)
        self.vocab_transform = nn.Linear(c.dim, c.dim)
        self.vocab_layer_norm = nn.LayerNorm(c.dim, eps=1e-12)
        self.vocab_projector = nn.Linear(c.dim, c.vocab_size)
        self.post_init()

    def _head(self, h, labels):
        h = self.vocab_layer_norm(linear(h, self.vocab_transform, self.config.activation))  # (B, T, dim)
        logits = linear(h, self.vocab_projector)  # (B, T, V)
        return None if labels is None else losses.masked_lm_loss(logits, labels), logits


class DistilBertForSequenceClassification(_Head):
    """DistilBERT with a classifier (or regressor) on the first token.

    The loss follows ``config.problem_type``; when unset it is inferred from ``num_labels`` and the
    labels' dtype, as the reference does, and recorded in ``model.config``.

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertForSequenceClassification
        >>> config = DistilBertConfig(n_layers=1, dim=32, n_heads=4, hidden_dim=64, num_labels=3)
        >>> model = DistilBertForSequenceClassification(config)
        >>> out = model(torch.tensor([[101, 7592, 102]]), labels=torch.tensor([2]))
        >>> out.logits.shape, model.config.problem_type
        (torch.Size([1, 3]), 'single_label_classification')
    """

    task = "sequence_classification"
    output_class = out.SequenceClassifierOutput
    first_token_only = True

    def __init__(self, config, attn_implementation=None):
        super().__init__(config, attn_implementation)
        c = self.config
        self.num_labels = c.num_labels
        self.distilbert = DistilBertModel(c)
        self.pre_classifier = nn.Linear(c.dim, c.dim)
        self.classifier = nn.Linear(c.dim, c.num_labels)
        self.dropout = nn.Dropout(c.seq_classif_dropout)
        self.post_init()

    def _head(self, h, labels):
        logits = self.classifier(self._pool(h))  # (B, L)
        if labels is None:
            return None, logits
        integers = not (labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool)
        kind = problem_type_for(self.config.problem_type, self.num_labels, integers)
        if kind != self.config.problem_type and not torch.compiler.is_compiling():
            self._set_config(self.config.replace(problem_type=kind))  # recorded, as the reference does
        return losses.sequence_classification_loss(logits, labels, kind), logits


class DistilBertForMultipleChoice(_Head):
    """DistilBERT scoring each of C choices; inputs are ``(B, C, T)``, logits ``(B, C)``.

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertForMultipleChoice
        >>> model = DistilBertForMultipleChoice(DistilBertConfig(n_layers=1, dim=32, n_heads=4, hidden_dim=64))
        >>> model(torch.tensor([[[101, 7592, 102], [101, 2088, 102]]])).logits.shape
        torch.Size([1, 2])
    """

    task = "multiple_choice"
    output_class = out.MultipleChoiceModelOutput
    first_token_only = True

    def __init__(self, config, attn_implementation=None):
        super().__init__(config, attn_implementation)
        c = self.config
        self.distilbert = DistilBertModel(c)
        self.pre_classifier = nn.Linear(c.dim, c.dim)
        self.classifier = nn.Linear(c.dim, 1)
        self.dropout = nn.Dropout(c.seq_classif_dropout)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        labels=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        token_type_ids=None,
    ):
        """Scores every choice; ``labels`` ``(B,)`` (the right choice) add the loss."""
        shape = _check(
            self.config,
            input_ids,
            inputs_embeds,
            attention_mask,
            token_type_ids,
            position_ids,
            head_mask,
            rank=3,
            values=False,
        )  # values: once the choices are folded into the batch
        check_labels(self.config, self.task, shape, labels)
        choices = shape[1]
        if position_ids is not None:  # any shape that broadcasts to (B, C, T)
            position_ids = position_ids.expand(shape)

        def flat(t):  # (B, C, T, ...) -> (B*C, T, ...)
            return None if t is None else t.reshape(-1, *t.shape[2:])

        result = super().forward(
            flat(input_ids),
            flat(attention_mask),
            head_mask,
            flat(inputs_embeds),
            None,
            output_attentions,
            output_hidden_states,
            True,
            flat(position_ids),
            flat(token_type_ids),
        )
        result.logits = result.logits.view(-1, choices)  # (B, C)
        if labels is not None:
            result.loss = losses.multiple_choice_loss(result.logits, labels)
        return result if self._flags(None, None, return_dict)[2] else result.to_tuple()

    def _head(self, h, labels):
        return None, self.classifier(self._pool(h))  # (B*C, 1)


class DistilBertForTokenClassification(_Head):
    """DistilBERT with a per-token classifier (e.g. named entities); logits ``(B, T, L)``.

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertForTokenClassification
        >>> config = DistilBertConfig(n_layers=1, dim=32, n_heads=4, hidden_dim=64, num_labels=5)
        >>> DistilBertForTokenClassification(config)(torch.tensor([[101, 7592, 102]])).logits.shape
        torch.Size([1, 3, 5])
    """

    task = "token_classification"
    output_class = out.TokenClassifierOutput

    def __init__(self, config, attn_implementation=None):
        super().__init__(config, attn_implementation)
        c = self.config
        self.num_labels = c.num_labels
        self.distilbert = DistilBertModel(c)
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.dim, c.num_labels)
        self.post_init()

    def _head(self, h, labels):
        logits = self.classifier(self.dropout(h))  # (B, T, L)
        return None if labels is None else losses.token_classification_loss(logits, labels), logits


class DistilBertForQuestionAnswering(_Head):
    """DistilBERT predicting answer-span start and end logits ``(B, T)`` each.

    Example:
        >>> import torch
        >>> from distilbert import DistilBertConfig
        >>> from distilbert.pt import DistilBertForQuestionAnswering
        >>> model = DistilBertForQuestionAnswering(DistilBertConfig(n_layers=1, dim=32, n_heads=4, hidden_dim=64))
        >>> model(torch.tensor([[101, 7592, 102]])).start_logits.shape
        torch.Size([1, 3])
    """

    task = "question_answering"

    def __init__(self, config, attn_implementation=None):
        super().__init__(config, attn_implementation)
        c = self.config
        check_head_config(c, self.task)
        self.distilbert = DistilBertModel(c)
        self.qa_outputs = nn.Linear(c.dim, 2)
        self.dropout = nn.Dropout(c.qa_dropout)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        head_mask=None,
        inputs_embeds=None,
        start_positions=None,
        end_positions=None,
        output_attentions=None,
        output_hidden_states=None,
        return_dict=None,
        position_ids=None,
        token_type_ids=None,
    ):
        """Runs the encoder and the span head; ``start_positions`` and ``end_positions`` add the loss."""
        base = self._encode(
            input_ids,
            attention_mask,
            head_mask,
            inputs_embeds,
            output_attentions,
            output_hidden_states,
            position_ids,
            token_type_ids,
        )
        check_labels(self.config, self.task, base.last_hidden_state.shape[:2], None, start_positions, end_positions)
        logits = self.qa_outputs(self.dropout(base.last_hidden_state))  # (B, T, 2)
        start, end = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))  # (B, T) each
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = losses.question_answering_loss(start, end, start_positions, end_positions)
        result = out.QuestionAnsweringModelOutput(
            loss=loss, start_logits=start, end_logits=end, hidden_states=base.hidden_states, attentions=base.attentions
        )
        return result if self._flags(None, None, return_dict)[2] else result.to_tuple()
