"""SASRec and its training loop on a planted sequential pattern: it must learn the pattern, resume exactly from
its checkpoints, and write checkpoints that load with weights_only=True."""

import json

import numpy as np
import pytest
import torch

from sid_models.metrics import popularity_scores, rank_metrics, spearman
from sid_models.sasrec import SASRec, SASRecConfig
from sid_models.sequences import LeaveOneOut
from sid_models.devices import autocast_dtype, resolve_device
from sid_models.train_sasrec import TrainConfig, evaluate, main, train

# A long-tail catalogue like Amazon Beauty: with 600 users of 5-15 events, the median item has ~3 train events.
N_ITEMS = 1000


def planted_events(n_users: int = 600, seed: int = 0):
    """Item i is followed by succ(i) (a fixed random permutation) 85% of the time, otherwise by a random item;
    first items are Zipf-popular. Leave-one-out labels: last event test, second-last valid."""
    rng = np.random.default_rng(seed)
    succ = rng.permutation(N_ITEMS) + 1
    popularity = 1.0 / np.arange(1, N_ITEMS + 1) ** 1.2
    popularity /= popularity.sum()
    users, items, split = [], [], []
    for user in range(n_users):
        length = int(rng.integers(5, 16))
        sequence = [int(rng.choice(N_ITEMS, p=popularity)) + 1]
        for _ in range(length - 1):
            follow = rng.random() < 0.85
            sequence.append(int(succ[sequence[-1] - 1]) if follow else int(rng.integers(1, N_ITEMS + 1)))
        users += [user] * length
        items += sequence
        split += ["train"] * (length - 2) + ["valid", "test"]
    return np.array(users), np.array(items), np.array(split)


def planted_split() -> LeaveOneOut:
    users, items, split = planted_events()
    return LeaveOneOut.from_events(users, items, split, n_items=N_ITEMS)


def tiny_model(**overrides) -> SASRecConfig:
    return SASRecConfig(**{"n_items": N_ITEMS, "max_len": 12, "hidden": 32, "layers": 1, "heads": 2,
                           "dropout": 0.1, **overrides})


def quick_training(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 4, "batch_size": 64, "lr": 3e-3, "seed": 1, "patience": 100,
                          "torch_threads": 1, "device": "cpu", **overrides})


@pytest.fixture(autouse=True, scope="module")
def restore_torch_threads():
    """train() sets torch's global thread count; one thread is fastest for these tiny models and does not
    thrash when the machine is busy. Later tests get the original count back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def planted():
    data = planted_split()
    return data, train(data, tiny_model(), quick_training(epochs=25))


def test_learns_the_planted_pattern_far_beyond_popularity(planted):
    data, result = planted
    popularity = popularity_scores(data.train).expand(len(data.test.target), -1)
    baseline = rank_metrics(popularity, torch.from_numpy(data.test.target))
    assert result.test["ndcg@10"] >= 3 * baseline["ndcg@10"]
    assert result.test["ndcg@10"] - baseline["ndcg@10"] >= 0.2
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.device == "cpu" and result.train_seconds > 0
    # The returned model is the best validation state: evaluating it again gives the reported test metrics.
    assert evaluate(result.model, data.valid) == pytest.approx(result.best_valid)
    assert evaluate(result.model, data.test) == pytest.approx(result.test)


def test_item_embeddings_are_finite_and_norms_follow_popularity(planted):
    data, result = planted
    embeddings = result.model.item_embeddings().numpy()
    assert embeddings.shape == (N_ITEMS, 32)
    assert np.isfinite(embeddings).all()
    counts = np.bincount(data.train.items, minlength=N_ITEMS + 1)[1:]
    # Input rows move only when their item occurs in a history, so with most items rare the norm tracks evidence
    # (0.37-0.39 over seeds 0-2 here).
    assert spearman(np.linalg.norm(embeddings, axis=1), counts) > 0.2


def test_padding_is_invisible_and_attention_is_causal():
    torch.manual_seed(0)
    model = SASRec(tiny_model()).eval()
    inputs = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 6, 7], [0] * 12, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]])
    hidden = model(inputs)
    assert hidden.shape == (3, 12, 32) and torch.isfinite(hidden).all()
    # Left-trimmed padding changes nothing: positions count from the right end.
    assert torch.allclose(model(inputs[:1, 8:])[:, -1], hidden[:1, -1], atol=1e-5)
    # Changing a later item leaves earlier positions untouched.
    changed = inputs.clone()
    changed[2, 8] = 99
    again = model(changed)
    assert torch.allclose(again[2, :8], hidden[2, :8], atol=1e-6)
    assert not torch.allclose(again[2, 8:], hidden[2, 8:])
    assert model.scores(hidden).shape == (3, 12, N_ITEMS + 1)
    assert torch.equal(model.item_embeddings(), model.item_embedding.weight[1:])
    assert model.output_table() is model.output_embedding.weight
    tied = SASRec(tiny_model(tie_output=True))
    assert tied.output_table() is tied.item_embedding.weight
    with pytest.raises(ValueError, match="max_len"):
        model(torch.ones(1, 13, dtype=torch.long))


@pytest.mark.parametrize("loss", ["cross_entropy", "sampled_softmax"])
def test_both_losses_train(loss):
    result = train(planted_split(), tiny_model(loss=loss, negatives=32), quick_training(epochs=4))
    losses = [record["loss"] for record in result.history]
    assert losses[-1] < losses[0]
    assert result.test["ndcg@10"] > 0


def test_time_budget_and_patience_stop_training():
    data = planted_split()
    out_of_time = train(data, tiny_model(), quick_training(epochs=10, max_seconds=0))
    assert (out_of_time.epochs, out_of_time.stop_reason) == (1, "time")
    impatient = train(data, tiny_model(), quick_training(epochs=50, lr=1e-6, patience=1))
    assert impatient.stop_reason == "patience" and impatient.epochs < 50
    assert impatient.epochs == impatient.best_epoch + 1


def test_same_seed_same_run():
    data = planted_split()
    first = train(data, tiny_model(), quick_training(epochs=2))
    second = train(data, tiny_model(), quick_training(epochs=2))
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in first.history] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in second.history]


def test_resume_continues_from_the_saved_step(tmp_path):
    data = planted_split()
    steps_per_epoch = -(-int((data.train.lengths >= 2).sum()) // 64)
    first = train(data, tiny_model(), quick_training(epochs=2), checkpoint_dir=tmp_path)
    assert (first.epochs, first.steps) == (2, 2 * steps_per_epoch)
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert (saved["progress"]["epoch"], saved["progress"]["step"]) == (2, 2 * steps_per_epoch)

    records = []
    resumed = train(data, tiny_model(), quick_training(epochs=4), checkpoint_dir=tmp_path, resume=True,
                    progress=records.append)
    assert [(r["epoch"], r["step"]) for r in records] == [(3, 3 * steps_per_epoch), (4, 4 * steps_per_epoch)]
    assert (resumed.epochs, resumed.steps) == (4, 4 * steps_per_epoch)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]

    # Model, optimizer and both RNG states were restored: the resumed run equals one uninterrupted run.
    straight = train(data, tiny_model(), quick_training(epochs=4))
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    assert resumed.test == straight.test

    with pytest.raises(ValueError, match="trained with"):
        train(data, tiny_model(hidden=16), quick_training(epochs=5), checkpoint_dir=tmp_path, resume=True)


def test_script_writes_outputs_and_weights_only_checkpoints(tmp_path, monkeypatch):
    users, items, split = planted_events(n_users=200)
    np.savez(tmp_path / "events.npz", user_index=users, item_index=items, split=split, n_items=N_ITEMS)
    # As under `torchrun --nproc_per_node=1`.
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = tmp_path / "run"
    main(["--data", str(tmp_path / "events.npz"), "--out", str(out), "--epochs", "2", "--hidden", "16",
          "--layers", "1", "--max-len", "10", "--tie-output", "--device", "cpu", "--torch-threads", "1"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["test"]) == {"recall@5", "recall@10", "ndcg@5", "ndcg@10"}
    assert metrics["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["model_config"]["hidden"] == 16 and metrics["model_config"]["tie_output"] is True
    assert np.load(out / "item_embeddings.npy").shape == (N_ITEMS, 16)
    for name in ("last.pt", "best.pt"):
        checkpoint = torch.load(out / "checkpoints" / name, weights_only=True)
        assert checkpoint["model_config"]["n_items"] == N_ITEMS
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    assert last["train_config"]["epochs"] == 2 and last["numpy_rng"]["bit_generator"] == "PCG64"


def test_auto_device_and_mixed_precision_fall_back_to_cpu_fp32():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert autocast_dtype("bf16", torch.device("cpu")) is None  # the CPU path always trains in fp32
    assert autocast_dtype("fp16", torch.device("cuda")) == torch.float16
    assert autocast_dtype("off", torch.device("cuda")) is None
    assert autocast_dtype("bf16", torch.device("cpu"), cpu=True) == torch.bfloat16  # the retriever's CPU bf16
    with pytest.raises(ValueError, match="needs CUDA"):
        autocast_dtype("fp16", torch.device("cpu"), cpu=True)
    with pytest.raises(ValueError, match="amp"):
        autocast_dtype("fp8", torch.device("cpu"))


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_cuda_mixed_precision_learns_and_its_checkpoint_loads_on_cpu(amp, tmp_path):
    data = planted_split()
    result = train(data, tiny_model(), quick_training(epochs=25, device="auto", amp=amp), checkpoint_dir=tmp_path)
    assert result.device.startswith("cuda")
    popularity = popularity_scores(data.train).expand(len(data.test.target), -1)
    assert result.test["ndcg@10"] >= 3 * rank_metrics(popularity, torch.from_numpy(data.test.target))["ndcg@10"]
    best = torch.load(tmp_path / "best.pt", map_location="cpu", weights_only=True)
    on_cpu = SASRec(SASRecConfig(**best["model_config"]))
    on_cpu.load_state_dict(best["model"])
    assert evaluate(on_cpu, data.test) == pytest.approx(result.test, abs=0.01)


@needs_cuda
def test_cuda_resume_equals_one_uninterrupted_run(tmp_path):
    data = planted_split()
    train(data, tiny_model(), quick_training(device="cuda", epochs=2), checkpoint_dir=tmp_path)
    resumed = train(data, tiny_model(), quick_training(device="cuda"), checkpoint_dir=tmp_path, resume=True)
    straight = train(data, tiny_model(), quick_training(device="cuda"))
    assert [r["loss"] for r in resumed.history] == pytest.approx([r["loss"] for r in straight.history], rel=1e-3)
