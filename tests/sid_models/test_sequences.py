"""CSR sequences, the leave-one-out split, and the batches built from it: shapes, padding, and no leakage of
validation or test items into training."""

import numpy as np
import pytest
import torch

from sid_models.sequences import (LeaveOneOut, SequenceData, evaluation_inputs, training_batches,
                                  trim_padding)


def small_split() -> LeaveOneOut:
    # user 0: train 1 2 3, valid 4, test 5; user 1: train only; user 2: train 8, test 9 (no valid);
    # user 3: no rows at all.
    users = np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 4])
    items = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    split = np.array(["train", "train", "train", "valid", "test", "train", "train", "train", "test", "train"])
    return LeaveOneOut.from_events(users, items, split, n_items=10)


def test_from_arrays_builds_offsets_and_validates():
    data = SequenceData.from_arrays(np.array([0, 0, 2, 2, 2]), np.array([5, 1, 2, 3, 4]), n_items=5)
    assert data.offsets.tolist() == [0, 2, 2, 5]
    assert data.row(0).tolist() == [5, 1]
    assert data.row(1).tolist() == []
    assert data.lengths.tolist() == [2, 0, 3]
    with pytest.raises(ValueError, match="non-decreasing"):
        SequenceData.from_arrays(np.array([0, 1, 0]), np.array([1, 2, 3]), n_items=5)
    with pytest.raises(ValueError, match="1..5"):
        SequenceData.from_arrays(np.array([0, 0]), np.array([0, 2]), n_items=5)
    with pytest.raises(ValueError, match="n_users"):
        SequenceData.from_arrays(np.array([0, 3]), np.array([1, 2]), n_items=5, n_users=2)


def test_leave_one_out_histories_and_targets():
    data = small_split()
    assert [data.train.row(u).tolist() for u in range(5)] == [[1, 2, 3], [6, 7], [8], [], [10]]
    assert data.valid.users.tolist() == [0]
    assert data.valid.target.tolist() == [4]
    assert data.valid.history.row(0).tolist() == [1, 2, 3]
    assert data.test.users.tolist() == [0, 2]
    assert data.test.target.tolist() == [5, 9]
    assert [data.test.history.row(r).tolist() for r in range(2)] == [[1, 2, 3, 4], [8]]


def test_split_codes_equal_labels():
    by_label = small_split()
    codes = np.array([0, 0, 0, 1, 2, 0, 0, 0, 2, 0], dtype=np.int8)
    by_code = LeaveOneOut.from_events(np.array([0, 0, 0, 0, 0, 1, 1, 2, 2, 4]), np.arange(1, 11), codes, 10)
    assert np.array_equal(by_label.test.history.items, by_code.test.history.items)
    assert np.array_equal(by_label.train.offsets, by_code.train.offsets)


@pytest.mark.parametrize("split, message", [
    (["train", "test", "valid"], "train -> valid -> test"),
    (["train", "valid", "valid"], "at most one"),
    (["train", "valid", "holdout"], "must be one of"),
])
def test_leave_one_out_rejects_bad_labels(split, message):
    with pytest.raises(ValueError, match=message):
        LeaveOneOut.from_events(np.zeros(3, dtype=int), np.array([1, 2, 3]), np.array(split), n_items=3)


def test_leave_one_out_rejects_unordered_users():
    with pytest.raises(ValueError, match="non-decreasing"):
        LeaveOneOut.from_events(np.array([1, 0, 1]), np.array([1, 2, 3]), np.array([0, 0, 1]), n_items=3)


def test_training_batches_left_pad_and_shift():
    train = SequenceData.from_arrays(np.array([0, 0, 0, 0, 0, 1, 1, 2]), np.array([1, 2, 3, 4, 5, 6, 7, 8]), 8)
    batches = list(training_batches(train, max_len=3, batch_size=8, rng=np.random.default_rng(0)))
    assert len(batches) == 1
    inputs, targets = batches[0]
    assert inputs.dtype == targets.dtype == torch.int64
    rows = sorted(zip(inputs.tolist(), targets.tolist()))
    # user 0 keeps its last 4 items (1 dropped); user 2 has one item and nothing to predict.
    assert rows == [([0, 0, 6], [0, 0, 7]), ([2, 3, 4], [3, 4, 5])]


def test_evaluation_inputs_and_trim_padding():
    history = SequenceData.from_arrays(np.array([0, 0, 0, 1]), np.array([1, 2, 3, 4]), n_items=4)
    inputs = evaluation_inputs(history, np.array([1, 0]), max_len=4)
    assert inputs.tolist() == [[0, 0, 0, 4], [0, 1, 2, 3]]
    assert evaluation_inputs(history, np.array([0]), max_len=2).tolist() == [[2, 3]]
    (trimmed,) = trim_padding(inputs)
    assert trimmed.tolist() == [[0, 0, 4], [1, 2, 3]]
    assert trim_padding(torch.zeros(2, 5, dtype=torch.long))[0].shape == (2, 1)


def leakage_events(seed: int = 0):
    """Every event gets its own item id, so an item names exactly one (user, position, split)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 40, size=300)
    users = np.repeat(np.arange(300), lengths)
    position = np.arange(len(users)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    from_end = np.repeat(lengths, lengths) - 1 - position
    # Leave-one-out for users with 3+ events; shorter users are train only.
    long_enough = np.repeat(lengths >= 3, lengths)
    split = np.where(long_enough & (from_end == 0), 2, np.where(long_enough & (from_end == 1), 1, 0))
    return users, np.arange(1, len(users) + 1), split, position


@pytest.mark.parametrize("sort_window", [1, 4])
def test_no_valid_or_test_item_reaches_training(sort_window):
    users, items, split, position = leakage_events()
    max_len = 10
    data = LeaveOneOut.from_events(users, items, split, n_items=len(items))
    user_of, split_of, position_of = np.r_[-1, users], np.r_[-1, split], np.r_[-1, position]
    train_lengths = data.train.lengths
    seen_users = []
    for inputs, targets in training_batches(data.train, max_len, batch_size=32, rng=np.random.default_rng(1),
                                            sort_window=sort_window):
        assert inputs.shape == targets.shape and inputs.shape[1] == max_len
        for row_inputs, row_targets in zip(inputs.numpy(), targets.numpy()):
            real = row_targets != 0
            assert np.array_equal(real, row_inputs != 0)
            assert not real[0] or real.all()  # padding only on the left
            row_items = np.r_[row_inputs[real], row_targets[real][-1]]
            assert np.all(split_of[row_items] == 0), "a valid or test item reached a training batch"
            (user,) = set(user_of[row_items].tolist())
            # The row is the user's last min(n, max_len + 1) train events, in order, shifted by one.
            n = train_lengths[user]
            assert position_of[row_items].tolist() == list(range(n - len(row_items), n))
            assert len(row_items) == min(n, max_len + 1)
            seen_users.append(user)
    assert sorted(seen_users) == np.flatnonzero(train_lengths >= 2).tolist()
    assert set(data.valid.target.tolist()).isdisjoint(data.train.items.tolist())
    assert set(data.test.target.tolist()).isdisjoint(data.train.items.tolist())


def test_shuffling_follows_the_generator():
    users, items, split, _ = leakage_events()
    data = LeaveOneOut.from_events(users, items, split, n_items=len(items))

    def first_batch(seed):
        return next(training_batches(data.train, 10, 32, np.random.default_rng(seed)))[0]

    assert torch.equal(first_batch(3), first_batch(3))
    assert not torch.equal(first_batch(3), first_batch(4))
