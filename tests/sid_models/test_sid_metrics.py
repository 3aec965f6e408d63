"""Quantization metrics, collision tokens and SID strings on hand-made code tables."""

import math

import numpy as np
import pytest

from sid_models.sid_metrics import collision_tokens, quantization_metrics, sid_strings


def test_entropy_is_ln_k_for_a_uniform_code_and_zero_for_a_constant_one():
    codes = np.column_stack([np.tile(np.arange(8), 5), np.full(40, 3)])
    metrics = quantization_metrics(codes, [8, 8])
    assert metrics["entropy_per_codebook"][0] == pytest.approx(math.log(8))
    assert metrics["entropy_per_codebook"][1] == 0.0
    assert metrics["entropy"] == pytest.approx(math.log(8) / 2)
    assert metrics["utilization_per_codebook"] == [1.0, 1 / 8]
    assert metrics["utilization"] == pytest.approx((1 + 1 / 8) / 2)


def test_collisions_on_a_hand_made_table():
    codes = np.array([[0, 1], [0, 1], [2, 3], [0, 1], [2, 3], [4, 4]])
    metrics = quantization_metrics(codes, [5, 5])
    # SID (0,1) holds 3 items, (2,3) holds 2, (4,4) is alone: 5 of 6 items collide.
    assert metrics["collision_rate"] == pytest.approx(5 / 6)
    assert metrics["unique_sids"] == 3
    assert metrics["max_collision_group"] == 3
    assert metrics["n_items"] == 6


def test_a_collision_free_table():
    codes = np.array([[0, 0], [0, 1], [1, 0]])
    metrics = quantization_metrics(codes, [2, 2])
    assert (metrics["collision_rate"], metrics["unique_sids"], metrics["max_collision_group"]) == (0.0, 3, 1)


def test_codes_outside_the_codebook_are_rejected():
    with pytest.raises(ValueError, match="outside"):
        quantization_metrics(np.array([[0, 5]]), [5, 5])
    with pytest.raises(ValueError, match="codebook sizes"):
        quantization_metrics(np.array([[0, 1]]), [5])


def test_collision_tokens_follow_row_order_inside_each_group():
    codes = np.array([[0, 1], [2, 3], [0, 1], [4, 4], [2, 3], [0, 1]])
    assert collision_tokens(codes).tolist() == [0, 0, 1, 0, 1, 2]


@pytest.mark.parametrize("high", [3, 2**40])  # the packed int64 key and the lexsort fallback
def test_collision_tokens_make_every_sid_unique(high):
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(5000, 3))
    codes[:, 0] = np.where(codes[:, 0] == 2, high - 1, codes[:, 0])
    tokens = collision_tokens(codes)
    assert tokens.dtype == np.int64
    full = np.column_stack([codes, tokens])
    assert len(np.unique(full, axis=0)) == len(codes)
    # Within each group the tokens are 0..size-1, in row order.
    for sid in np.unique(codes, axis=0)[:5]:
        rows = np.flatnonzero((codes == sid).all(axis=1))
        assert tokens[rows].tolist() == list(range(len(rows)))


def test_sid_strings_format():
    codes = np.array([[12, 3, 45], [0, 0, 7]])
    assert sid_strings(codes, ["s0", "t0", "b0"], np.array([0, 2])) == [
        "<s0_12><t0_3><b0_45><d_0>", "<s0_0><t0_0><b0_7><d_2>"]
    assert sid_strings(codes, ["s0", "t0", "b0"], None)[1] == "<s0_0><t0_0><b0_7>"
    with pytest.raises(ValueError, match="token names"):
        sid_strings(codes, ["s0"], None)


def test_empty_table():
    codes = np.zeros((0, 2), dtype=np.int64)
    assert quantization_metrics(codes, [4, 4])["unique_sids"] == 0
    assert collision_tokens(codes).shape == (0,)
    assert sid_strings(codes, ["a", "b"], np.zeros(0, dtype=np.int64)) == []
