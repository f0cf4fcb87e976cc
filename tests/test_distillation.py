"""The distillation recipe defined in numpy: its config, the triple loss, the masking."""

import dataclasses
import doctest
import math

import numpy as np
import pytest

import distilbert
from distilbert.common import distillation as distillation_module
from distilbert.common.distillation import (
    DistillationConfig,
    distillation_loss_numpy,
    mask_tokens,
    token_counts,
    token_weights,
)

PAPER = dict(
    temperature=2.0,
    alpha_ce=5.0,
    alpha_mlm=2.0,
    alpha_cos=1.0,
    alpha_mse=0.0,
    alpha_pool=0.0,
    restrict_ce_to_mask=False,
    mlm_mask_prop=0.15,
    word_mask=0.8,
    word_keep=0.1,
    word_rand=0.1,
    mlm_smoothing=0.7,
)


# ------------------------------------------------------------------------------------------ config
def test_defaults_are_the_papers_recipe():
    assert DistillationConfig().to_dict() == PAPER
    assert distilbert.DistillationConfig is DistillationConfig and "DistillationConfig" in distilbert.__all__


def test_config_round_trips(tmp_path):
    config = DistillationConfig(temperature=3.0, alpha_mse=0.5, restrict_ce_to_mask=True)
    assert DistillationConfig.from_dict(config.to_dict()) == config
    config.to_json_file(tmp_path / "distillation.json")
    assert DistillationConfig.from_json_file(tmp_path / "distillation.json") == config
    assert config.replace(alpha_ce=0.0).alpha_ce == 0.0 and config.alpha_ce == 5.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.temperature = 1.0


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("temperature", 0.0, "temperature must be > 0"),
        ("temperature", float("inf"), "temperature must be a finite number"),
        ("temperature", "2", "temperature must be a finite number"),
        ("alpha_ce", -1.0, "alpha_ce must be >= 0"),
        ("alpha_mse", True, "alpha_mse must be a finite number"),
        ("alpha_pool", -0.5, "alpha_pool must be >= 0"),
        ("restrict_ce_to_mask", 1, "restrict_ce_to_mask must be True or False"),
        ("mlm_mask_prop", 0.0, r"mlm_mask_prop must be in \(0, 1\]"),
        ("mlm_mask_prop", 1.5, r"mlm_mask_prop must be in \(0, 1\]"),
        ("word_rand", -0.1, "word_rand must be a probability"),
        ("word_mask", 0.7, "word_mask \\+ word_keep \\+ word_rand must be 1"),
        ("mlm_smoothing", -0.5, "mlm_smoothing must be >= 0"),
    ],
)
def test_bad_fields_are_named(field, value, message):
    with pytest.raises(ValueError, match=f"DistillationConfig.*{message}"):
        DistillationConfig(**{field: value})


def test_all_zero_weights_and_unknown_fields_are_refused(tmp_path):
    with pytest.raises(ValueError, match="every alpha_\\* is 0"):
        DistillationConfig(alpha_ce=0, alpha_mlm=0, alpha_cos=0, alpha_mse=0)
    with pytest.raises(ValueError, match="no field\\(s\\) 'temprature'"):
        DistillationConfig.from_dict({"temprature": 2.0})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        DistillationConfig.from_json_file(tmp_path / "bad.json")


# -------------------------------------------------------------------------------------------- loss
def _batch(seed=0, batch=2, seq=5, vocab=7, dim=4):
    rng = np.random.default_rng(seed)
    s_logits = rng.normal(size=(batch, seq, vocab)) * 2
    t_logits = rng.normal(size=(batch, seq, vocab)) * 2
    s_hidden, t_hidden = rng.normal(size=(batch, seq, dim)), rng.normal(size=(batch, seq, dim))
    mask = np.ones((batch, seq), np.int64)
    mask[1, 3:] = 0
    labels = np.full((batch, seq), -100)
    labels[0, 1], labels[0, 4], labels[1, 2] = 3, 0, 6
    return s_logits, t_logits, s_hidden, t_hidden, mask, labels


def _by_hand(s_logits, t_logits, s_hidden, t_hidden, mask, labels, c):
    """The issue's formulas, position by position in plain Python."""

    def softmax(row, T):
        exps = [math.exp(v / T) for v in row]
        return [e / sum(exps) for e in exps]

    selected = [
        (b, t)
        for b in range(mask.shape[0])
        for t in range(mask.shape[1])
        if mask[b, t] == 1 and (not c.restrict_ce_to_mask or labels[b, t] != -100)
    ]
    kl = cos = mse = 0.0
    for b, t in selected:
        p_s, p_t = softmax(s_logits[b, t], c.temperature), softmax(t_logits[b, t], c.temperature)
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s))
        s, h = s_hidden[b, t], t_hidden[b, t]
        cos += 1 - sum(s * h) / (math.sqrt(sum(s * s)) * math.sqrt(sum(h * h)))
        mse += sum((a - z) ** 2 for a, z in zip(s_logits[b, t], t_logits[b, t]))
    pool = 0.0  # the mean-pooled vectors over the real tokens, whatever restrict_ce_to_mask says
    for b in range(mask.shape[0]):
        real = [t for t in range(mask.shape[1]) if mask[b, t] == 1]
        s = sum(s_hidden[b, t] for t in real) / len(real)
        h = sum(t_hidden[b, t] for t in real) / len(real)
        pool += (1 - sum(s * h) / (math.sqrt(sum(s * s)) * math.sqrt(sum(h * h)))) / mask.shape[0]
    masked = [(b, t) for b in range(mask.shape[0]) for t in range(mask.shape[1]) if labels[b, t] != -100]
    mlm = sum(-math.log(softmax(s_logits[b, t], 1.0)[labels[b, t]]) for b, t in masked) / len(masked)
    n = len(selected)
    terms = dict(ce=c.temperature**2 * kl / n, mlm=mlm, cos=cos / n, mse=mse / n, pool=pool)
    terms["loss"] = (
        c.alpha_ce * terms["ce"]
        + c.alpha_mlm * terms["mlm"]
        + c.alpha_cos * terms["cos"]
        + c.alpha_mse * terms["mse"]
        + c.alpha_pool * terms["pool"]
    )
    return terms


@pytest.mark.parametrize(
    "config",
    [
        DistillationConfig(),
        DistillationConfig(temperature=1.0, alpha_mse=0.3),
        DistillationConfig(temperature=4.0, restrict_ce_to_mask=True, alpha_mse=1.0),
        DistillationConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_pool=1.0),
        DistillationConfig(restrict_ce_to_mask=True, alpha_pool=3.0),
    ],
)
def test_loss_is_the_formulas(config):
    batch = _batch()
    got = distillation_loss_numpy(*batch, config)
    expected = _by_hand(*batch, config)
    assert list(got) == ["loss", "ce", "mlm", "cos", "mse", "pool"]
    for term, value in expected.items():
        assert got[term] == pytest.approx(value, rel=1e-12, abs=1e-12), term
        assert isinstance(got[term], float)


def test_ce_at_temperature_one_is_the_kl_divergence_and_zero_for_equal_logits():
    import torch

    s_logits, t_logits, s_hidden, t_hidden, mask, labels = _batch(seed=1)
    mask[:] = 1
    config = DistillationConfig(temperature=1.0)
    got = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, labels, config)
    log_ps = torch.log_softmax(torch.from_numpy(s_logits).reshape(-1, s_logits.shape[-1]), -1)
    log_pt = torch.log_softmax(torch.from_numpy(t_logits).reshape(-1, t_logits.shape[-1]), -1)
    kl = torch.nn.functional.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    assert got["ce"] == pytest.approx(float(kl), rel=1e-12)
    same = distillation_loss_numpy(s_logits, s_logits, s_hidden, s_hidden, mask, labels, DistillationConfig())
    assert same["ce"] == 0.0 and same["mse"] == 0.0 and abs(same["cos"]) < 1e-15
    assert same["loss"] == pytest.approx(2.0 * same["mlm"], rel=1e-15)


def test_mlm_is_zero_without_masked_positions_and_an_empty_selection_gives_zero():
    s_logits, t_logits, s_hidden, t_hidden, mask, labels = _batch(seed=2)
    none = np.full_like(labels, -100)
    got = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, none, DistillationConfig())
    assert got["mlm"] == 0.0 and got["ce"] > 0
    restricted = DistillationConfig(restrict_ce_to_mask=True, alpha_mse=1.0)
    got = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, none, restricted)
    assert got == {"loss": 0.0, "ce": 0.0, "mlm": 0.0, "cos": 0.0, "mse": 0.0, "pool": got["pool"]}
    assert got["pool"] > 0  # the pooled term runs over the real tokens, not the (empty) selection


def test_pool_is_the_cosine_of_the_mean_pooled_vectors_and_sees_the_token_norms():
    s_logits, t_logits, s_hidden, t_hidden, mask, labels = _batch(seed=7)
    config = DistillationConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, alpha_pool=1.0)
    got = distillation_loss_numpy(None, None, s_hidden, t_hidden, mask, None, config)
    real = mask[..., None]
    s, t = (s_hidden * real).sum(1) / real.sum(1), (t_hidden * real).sum(1) / real.sum(1)
    cosines = (s * t).sum(-1) / (np.linalg.norm(s, axis=-1) * np.linalg.norm(t, axis=-1))
    assert got["pool"] == pytest.approx(float((1 - cosines).mean()), rel=1e-12) and got["loss"] == got["pool"]
    # Scaling one token's vector leaves its direction, so cos, but not the sentence's mean, so pool.
    scaled = s_hidden.copy()
    scaled[0, 1] *= 5.0
    again = distillation_loss_numpy(None, None, scaled, t_hidden, mask, None, config)
    assert again["cos"] == pytest.approx(got["cos"], rel=1e-12) and abs(again["pool"] - got["pool"]) > 1e-3
    # Scaling a whole example changes neither; an example without a real token does not count.
    whole = s_hidden.copy()
    whole[1] *= 3.0
    scaled_whole = distillation_loss_numpy(None, None, whole, t_hidden, mask, None, config)
    assert scaled_whole["pool"] == pytest.approx(got["pool"], rel=1e-12)
    empty = np.concatenate([mask, np.zeros_like(mask[:1])])
    padded = [np.concatenate([h, 7.0 + h[:1]]) for h in (s_hidden, t_hidden)]
    assert distillation_loss_numpy(None, None, *padded, empty, None, config)["pool"] == pytest.approx(got["pool"])
    with pytest.raises(ValueError, match="alpha_pool=1.0 needs student_hidden and teacher_hidden"):
        distillation_loss_numpy(None, None, None, None, mask, None, config)


def test_only_terms_that_learn_from_masked_inputs_need_masking():
    assert DistillationConfig().needs_masking
    hidden_only = DistillationConfig(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0, alpha_pool=1.0)
    assert not hidden_only.needs_masking
    for changes in (dict(alpha_mlm=1.0), dict(alpha_ce=1.0), dict(alpha_mse=1.0), dict(restrict_ce_to_mask=True)):
        assert hidden_only.replace(**changes).needs_masking, changes


def test_padding_does_not_count():
    s_logits, t_logits, s_hidden, t_hidden, mask, labels = _batch(seed=3)
    config = DistillationConfig(alpha_mse=1.0)
    before = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, labels, config)
    padded = mask == 0
    for array in (s_logits, t_logits, s_hidden, t_hidden):
        array[padded] = 1e3 * np.random.default_rng(0).normal(size=array[padded].shape)
    after = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, labels, config)
    assert after == before


def test_terms_a_teacher_without_logits_cannot_give_are_refused_unless_their_weight_is_zero():
    s_logits, _, s_hidden, t_hidden, mask, labels = _batch(seed=4)
    with pytest.raises(ValueError, match="alpha_ce=5.0 needs teacher_logits .*bare encoder.*alpha_ce=0"):
        distillation_loss_numpy(s_logits, None, s_hidden, t_hidden, mask, labels, DistillationConfig())
    with pytest.raises(ValueError, match="alpha_cos=1.0 needs student_hidden and teacher_hidden"):
        distillation_loss_numpy(s_logits, None, None, None, mask, labels, DistillationConfig(alpha_ce=0))
    with pytest.raises(ValueError, match="alpha_mlm=2.0 needs labels"):
        distillation_loss_numpy(s_logits, None, s_hidden, t_hidden, mask, None, DistillationConfig(alpha_ce=0))
    got = distillation_loss_numpy(s_logits, None, s_hidden, t_hidden, mask, labels, DistillationConfig(alpha_ce=0))
    assert got["ce"] == 0.0 and got["mse"] == 0.0
    assert got["loss"] == pytest.approx(2.0 * got["mlm"] + got["cos"], rel=1e-15)


def test_shapes_that_disagree_are_refused():
    s_logits, t_logits, s_hidden, t_hidden, mask, labels = _batch(seed=5)
    c = DistillationConfig()
    with pytest.raises(ValueError, match="differ in shape"):
        distillation_loss_numpy(s_logits, t_logits[..., :-1], s_hidden, t_hidden, mask, labels, c)
    with pytest.raises(ValueError, match="does not match attention_mask"):
        distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask[:, :-1], labels[:, :-1], c)
    with pytest.raises(ValueError, match="labels must have shape"):
        distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, labels[0], c)
    with pytest.raises(ValueError, match="labels must be -100 or in"):
        distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, np.where(labels == 3, 7, labels), c)


def test_class_logits_distil_soft_and_hard_targets_per_example():
    rng = np.random.default_rng(6)
    s_logits, t_logits = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    s_hidden, t_hidden = rng.normal(size=(3, 5, 8)), rng.normal(size=(3, 5, 8))
    mask = np.ones((3, 5), np.int64)
    labels = np.array([2, -100, 0])
    config = DistillationConfig(alpha_mse=1.0)
    got = distillation_loss_numpy(s_logits, t_logits, s_hidden, t_hidden, mask, labels, config)
    # The per-token formulas on one "position" per example give the same numbers.
    expected = _by_hand(
        s_logits[:, None], t_logits[:, None], s_hidden[:, :1], t_hidden[:, :1], mask[:, :1], labels[:, None], config
    )
    for term in ("ce", "mlm", "mse"):
        assert got[term] == pytest.approx(expected[term], rel=1e-12), term
    with pytest.raises(ValueError, match="restrict_ce_to_mask needs per-token labels"):
        distillation_loss_numpy(
            s_logits, t_logits, s_hidden, t_hidden, mask, labels, config.replace(restrict_ce_to_mask=True)
        )


# ----------------------------------------------------------------------------------------- masking
VOCAB, SPECIAL, MASK_ID = 99, [0, 1, 2, 3, 4], 4  # [PAD] [UNK] [CLS] [SEP] [MASK]


def _corpus(batch=200, seq=128, seed=0):
    """``[CLS] tokens... [SEP] [PAD]...`` rows of varying length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, VOCAB, size=(batch, seq))
    mask = np.ones_like(ids)
    for row, length in enumerate(rng.integers(seq // 2, seq + 1, size=batch)):
        ids[row, 0], ids[row, length - 1] = 2, 3
        ids[row, length:], mask[row, length:] = 0, 0
    return ids, mask


def test_same_seed_same_masks_and_another_seed_other_masks():
    ids, mask = _corpus(batch=8, seq=32)
    weights = token_weights(token_counts(ids, VOCAB), SPECIAL, 0.7)
    config = DistillationConfig()
    first = mask_tokens(ids, mask, weights, MASK_ID, config, np.random.default_rng(42))
    again = mask_tokens(ids, mask, weights, MASK_ID, config, np.random.default_rng(42))
    other = mask_tokens(ids, mask, weights, MASK_ID, config, np.random.default_rng(43))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[1], other[1])
    assert first[0].dtype == first[1].dtype == np.int64


def test_masks_follow_the_proportions_and_spare_special_tokens_and_padding():
    ids, mask = _corpus()
    weights = token_weights(token_counts(ids, VOCAB), SPECIAL, 0.7)
    masked, labels = mask_tokens(ids, mask, weights, MASK_ID, DistillationConfig(), np.random.default_rng(0))
    special = np.isin(ids, SPECIAL)
    maskable = (mask == 1) & ~special
    chosen = labels != -100
    assert chosen.sum() == math.ceil(0.15 * maskable.sum())
    assert not (chosen & ~maskable).any(), "a special token or padding was chosen"
    np.testing.assert_array_equal(masked[~chosen], ids[~chosen])
    np.testing.assert_array_equal(labels[chosen], ids[chosen])
    n = chosen.sum()
    as_mask = (masked[chosen] == MASK_ID).mean()
    kept = (masked[chosen] == ids[chosen]).mean()
    # ~2800 draws: three standard deviations of the proportions are 0.023 (0.8) and 0.017 (0.1); a random
    # replacement equals the original once in 94 (the non-special ids).
    assert n > 2500 and abs(as_mask - 0.8) < 0.023, (n, as_mask)
    assert abs(kept - 0.1 - 0.1 / 94) < 0.017 and abs(1 - as_mask - kept - 0.1 * 93 / 94) < 0.017, (n, kept)
    assert not np.isin(masked[chosen & (masked != MASK_ID)], SPECIAL).any(), "a random replacement was special"


def test_frequent_tokens_are_chosen_less_often_with_smoothing():
    # Token 10 is 1000 times as frequent in the corpus as token 11; the batch holds both equally often.
    counts = np.ones(VOCAB, np.int64)
    counts[10], counts[11] = 1000, 1
    ids = np.tile(np.array([[2] + [10, 11] * 20 + [3]]), (50, 1))
    mask = np.ones_like(ids)
    rates = {}
    for smoothing in (0.0, 0.7):
        weights = token_weights(counts, SPECIAL, smoothing)
        _, labels = mask_tokens(
            ids, mask, weights, MASK_ID, DistillationConfig(mlm_smoothing=smoothing), np.random.default_rng(1)
        )
        chosen = labels != -100
        rates[smoothing] = ((chosen & (ids == 10)).sum(), (chosen & (ids == 11)).sum())
    frequent, rare = rates[0.0]
    assert abs(frequent - rare) < 0.2 * (frequent + rare)  # uniform without smoothing
    frequent, rare = rates[0.7]
    assert rare > 5 * frequent  # 1000 ** 0.7 ~ 126 times the weight (fewer: drawn without replacement)


def test_token_counts_weights_and_bad_masking_input():
    counts = token_counts([[5, 5, 6], np.array([6, 7])], 10)
    np.testing.assert_array_equal(counts, [0, 0, 0, 0, 0, 2, 2, 1, 0, 0])
    weights = token_weights(counts, [0, 1], 0.5)
    assert weights[0] == weights[1] == 0.0 and weights[5] == pytest.approx(2**-0.5) and weights[9] == 1.0
    with pytest.raises(ValueError, match="token ids must be in"):
        token_counts([[10]], 10)
    ids, mask = _corpus(batch=2, seq=8)
    w = token_weights(np.ones(VOCAB), SPECIAL, 0.7)
    with pytest.raises(TypeError, match="numpy Generator"):
        mask_tokens(ids, mask, w, MASK_ID, DistillationConfig(), 0)
    with pytest.raises(ValueError, match="both be \\(batch, seq\\)"):
        mask_tokens(ids[0], mask[0], w, MASK_ID, DistillationConfig(), np.random.default_rng(0))
    with pytest.raises(ValueError, match="input_ids must be in"):
        mask_tokens(ids + VOCAB, mask, w, MASK_ID, DistillationConfig(), np.random.default_rng(0))
    only_special = np.array([[2, 3, 0]])
    masked, labels = mask_tokens(
        only_special, np.array([[1, 1, 0]]), w, MASK_ID, DistillationConfig(), np.random.default_rng(0)
    )
    assert (labels == -100).all() and (masked == only_special).all()


def test_docstring_examples_run():
    result = doctest.testmod(distillation_module)
    assert result.attempted >= 4 and result.failed == 0
