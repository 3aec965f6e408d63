"""ADC-SID: the network's parts (gates, R, straight-through gradients, ablation switches) and the tokenizer
(planted clusters recovered, high utilisation, seeded, save/load, CPU/GPU agreement)."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from sid_models.adc_sid import ADCSID, ADCSIDConfig, CosineCodebook, expert_tokens, usage_entropy_gap
from sid_models.alignment import alignment_strength, total_alignment
from sid_models.tokenizer import BEHAVIOR, read_checkpoint
from sid_models.train_adc_sid import ADCSIDTokenizer, ADCSIDTrainConfig, set_input_statistics

N_CLUSTERS, PER_CLUSTER, K = 8, 150, 16


def planted_catalogue(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """8 clusters x 150 items; every modality is its own cluster centre + noise; behavior vectors are scaled by a
    Zipf-like factor of a random popularity rank, so their norms vary over ~10x as head/tail items do."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(N_CLUSTERS), PER_CLUSTER)
    features = {}
    for name, dim, noise in [("text", 48, 1.0), ("visual", 32, 1.0), (BEHAVIOR, 16, 0.7)]:
        centres = rng.standard_normal((N_CLUSTERS, dim)) * 2
        features[name] = (centres[labels] + noise * rng.standard_normal((len(labels), dim))).astype(np.float32)
    rank = rng.permutation(len(labels)) + 1
    features[BEHAVIOR] *= (3.0 / rank ** 0.3)[:, None].astype(np.float32)
    return features, labels


def small_config(**overrides) -> ADCSIDConfig:
    return ADCSIDConfig(**{"codebook_size": K, "latent_dim": 16, "hidden_dim": 64, "expert_hidden": 64,
                           "gate_hidden": 32, **overrides})


def quick_training(**overrides) -> ADCSIDTrainConfig:
    return ADCSIDTrainConfig(**{"epochs": 30, "batch_size": 256, "lr": 2e-3, "seed": 0, "device": "cpu",
                                "torch_threads": 1, **overrides})


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    return sum(np.bincount(labels[codes == c]).max() for c in np.unique(codes)) / len(labels)


def built_model(config: ADCSIDConfig, features: dict[str, np.ndarray]) -> tuple[ADCSID, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    data = {m: torch.from_numpy(v) for m, v in features.items()}
    model = ADCSID(config, {m: v.shape[1] for m, v in data.items()}, ["text", "visual"])
    set_input_statistics(model, data, standardise=True)
    return model, {m: v[:64] for m, v in data.items()}


@pytest.fixture(scope="module")
def catalogue():
    return planted_catalogue()


@pytest.fixture(scope="module")
def fitted(catalogue):
    features, _ = catalogue
    tokenizer = ADCSIDTokenizer(small_config(), quick_training())
    records = []
    report = tokenizer.fit(features, progress=records.append)
    return tokenizer, report, records


def test_token_names_follow_modalities():
    config = ADCSIDConfig()
    assert [t for t, _ in expert_tokens(config, ["text", "visual"])] == ["s0", "t0", "v0", "b0", "b1", "b2"]
    assert [t for t, _ in expert_tokens(config, ["attributes", "text"])] == ["s0", "a0", "t0", "b0", "b1", "b2"]
    two = replace(config, content_experts={"text": 2, "tags": 1}, behavior_experts=1)
    assert [t for t, _ in expert_tokens(two, ["tags", "text"])] == ["s0", "tags0", "text0", "text1", "b0"]
    assert [t for t, _ in expert_tokens(config, ["brand", "style"])][1:3] == ["brand0", "style0"]
    tokenizer = ADCSIDTokenizer(replace(config, content_modalities=["text"]))
    assert tokenizer.token_names == ["s0", "t0", "b0", "b1", "b2"] and tokenizer.codebook_sizes == [100] * 5
    assert tokenizer.behavioral_positions == [2, 3, 4]


def test_gates_are_softmaxes_and_r_is_a_gated_relu(catalogue):
    model, batch = built_model(small_config(content_experts=2), catalogue[0])
    out = model(batch)
    for m in ("text", "visual"):
        assert out.gates[m].shape == (64, 2)
        assert torch.allclose(out.gates[m].sum(1), torch.ones(64))
    assert out.importance.shape == (64, 3) and (out.importance >= 0).all()
    x, n_norm = model.prepare(batch)
    pre_activation = model.behavior_gate(x[BEHAVIOR])
    assert torch.equal(out.importance == 0, pre_activation <= 0)
    open_ = pre_activation > 0
    expected = torch.sigmoid(n_norm)[:, None].expand(-1, 3)[open_] * pre_activation[open_]
    assert torch.allclose(out.importance[open_], expected)
    assert out.reconstruction.shape == out.target.shape == (64, 48 + 32 + 16)
    assert all(codes.dtype == torch.int64 and codes.max() < K for codes in out.codes.values())


def test_gradients_reach_experts_and_projections_through_the_straight_through_estimator(catalogue):
    model, batch = built_model(small_config(), catalogue[0])
    out = model(batch)  # codes come from an argmax: the decoder reaches the experts only straight through
    torch.nn.functional.mse_loss(out.reconstruction, out.target).backward()
    for name in model.token_names:
        assert model.experts[name][0].weight.grad.abs().sum() > 0, name
        assert model.codebooks[name].weight.grad is None or model.codebooks[name].weight.grad.abs().sum() == 0
    for m in model.modalities:
        assert model.projections[m][0].weight.grad.abs().sum() > 0, m
    assert model.behavior_gate[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    model.loss_terms(model(batch), 1e-3)["codebook"].backward()
    assert all(model.codebooks[name].weight.grad.abs().sum() > 0 for name in model.token_names)


def test_usage_entropy_gap_is_zero_for_even_usage_and_log_k_for_collapse():
    k = 8
    even = torch.eye(k).repeat(4, 1)  # 32 latents, each on its own codeword, every codeword chosen 4 times
    assert usage_entropy_gap(even, 0.01).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = torch.zeros(32, k)
    collapsed[:, 3] = 1.0
    assert usage_entropy_gap(collapsed, 0.01).item() == pytest.approx(math.log(k), abs=1e-4)
    similarities = torch.randn(32, k).clamp(-1, 1)
    usage = torch.softmax(similarities / 0.5, dim=1).mean(dim=0)
    direct = math.log(k) - float(-(usage * usage.log()).sum())
    assert usage_entropy_gap(similarities, 0.5).item() == pytest.approx(direct, rel=1e-5)


def test_usage_entropy_pulls_an_idle_codeword_toward_the_latents():
    codebook = CosineCodebook(2, 2)
    with torch.no_grad():
        codebook.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    latents = torch.nn.functional.normalize(torch.tensor([[1.0, 0.1], [1.0, 0.3], [1.0, 0.5]]), dim=1)
    codes, _, similarities = codebook(latents)
    assert codes.tolist() == [0, 0, 0]
    usage_entropy_gap(similarities, 0.5).backward()
    idle_step = -codebook.weight.grad[1]  # gradient descent moves codeword 1 along this
    assert float(idle_step @ latents.mean(dim=0)) > 0


def test_full_model_has_every_loss_term(catalogue):
    model, batch = built_model(small_config(), catalogue[0])
    out = model(batch)
    terms = model.loss_terms(out, 1e-2)
    assert set(terms) == {"reconstruction", "codebook", "commitment", "alignment", "usage_entropy", "load_balance"}
    w = alignment_strength(out.n_norm)
    expected = total_alignment({m: out.hidden[m] for m in ("text", "visual")}, out.hidden[BEHAVIOR], w)
    assert terms["alignment"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_ablation_switches_remove_their_terms(catalogue):
    features = catalogue[0]
    model, batch = built_model(small_config(use_alignment=False, use_shared_experts=False), features)
    terms = model.loss_terms(model(batch), 1e-2)
    assert "alignment" not in terms and len(model.projections) == 0  # no gradient path left to D_m
    assert model.token_names == ["t0", "v0", "b0", "b1", "b2"]

    model, batch = built_model(small_config(adaptive_alignment=False), features)
    out = model(batch)
    expected = total_alignment({m: out.hidden[m] for m in ("text", "visual")}, out.hidden[BEHAVIOR],
                               torch.ones(64))  # w == 1 for every item
    assert model.loss_terms(out, 1e-2)["alignment"].item() == pytest.approx(expected.item(), rel=1e-5)

    model, batch = built_model(small_config(use_load_balancing=False), features)
    assert "load_balance" not in model.loss_terms(model(batch), 1e-2)

    model, batch = built_model(small_config(use_usage_entropy=False), features)
    assert "usage_entropy" not in model.loss_terms(model(batch), 1e-2)

    model, batch = built_model(small_config(use_behavior_gate=False, use_content_gates=False,
                                            content_experts=2), features)
    out = model(batch)
    assert torch.equal(out.importance, torch.ones(64, 3)) and model.behavior_gate is None
    assert all(torch.equal(g, torch.ones(64, 2)) for g in out.gates.values())
    assert "load_balance" not in model.loss_terms(out, 1e-2)

    model, _ = built_model(small_config(use_specific_experts=False), features)
    assert model.token_names == ["s0"]


def test_recovers_planted_clusters_with_high_utilisation(fitted, catalogue):
    tokenizer, report, records = fitted
    features, labels = catalogue
    codes = tokenizer.encode(features)
    assert codes.shape == (len(labels), 6) and codes.dtype == np.int64
    assert tokenizer.token_names == ["s0", "t0", "v0", "b0", "b1", "b2"]
    chance = purity(np.random.default_rng(0).integers(0, K, len(labels)), labels)
    assert purity(codes[:, 0], labels) >= 0.95 > chance + 0.5  # the shared token
    for position in range(codes.shape[1]):
        assert len(np.unique(codes[:, position])) / K >= 0.75, tokenizer.token_names[position]
    assert tokenizer.reconstruction_loss(features) < 0.5  # predicting the mean of standardised inputs gives 1
    assert records == report.history and len(records) == 30 and report.device == "cpu"
    assert records[-1]["loss"] < records[0]["loss"]
    assert {"reconstruction", "codebook", "commitment", "alignment", "usage_entropy", "load_balance", "lb_lambda",
            "sparsity",
            "utilisation_s0", "utilisation_b2", "dead_codes_reseeded"} <= set(records[-1])
    assert report.anti_collapse["kmeans_init"] and report.anti_collapse["standardised_inputs"]
    assert report.anti_collapse["dead_codes_reinitialised"] == sum(r["dead_codes_reseeded"] for r in records)


def test_importance_is_nonnegative_finite_and_clamps_new_items(fitted, catalogue):
    tokenizer, _, _ = fitted
    features, _ = catalogue
    importance = tokenizer.importance(features)
    assert importance.shape == (len(features[BEHAVIOR]), 3) and importance.dtype == np.float32
    assert np.isfinite(importance).all() and (importance >= 0).all()
    # New items far outside the fitted norm range still get finite weights (N_norm clamps to [0, 1]).
    huge = {m: v[:5] * (100.0 if m == BEHAVIOR else 1.0) for m, v in features.items()}
    assert np.isfinite(tokenizer.importance(huge)).all()


def test_save_load_gives_identical_codes_and_importance(fitted, catalogue, tmp_path):
    tokenizer, _, _ = fitted
    features, _ = catalogue
    tokenizer.save(tmp_path / "adc.pt")
    kind, state = read_checkpoint(tmp_path / "adc.pt")
    loaded = ADCSIDTokenizer.from_state(state)
    assert kind == "adc_sid" and loaded.token_names == tokenizer.token_names
    assert np.array_equal(loaded.encode(features), tokenizer.encode(features))
    assert np.array_equal(loaded.importance(features), tokenizer.importance(features))
    assert loaded.reconstruction_loss(features) == pytest.approx(tokenizer.reconstruction_loss(features))
    # Extra modalities are ignored; encoding is deterministic.
    extra = {**features, "unused": np.zeros((len(features[BEHAVIOR]), 3), dtype=np.float32)}
    assert np.array_equal(loaded.encode(extra), loaded.encode(features))


def test_fit_is_seeded_and_runs_every_ablation(catalogue):
    features, _ = catalogue
    text_only = {"text": features["text"], BEHAVIOR: features[BEHAVIOR]}
    config = small_config(use_behavior_gate=False, use_alignment=False, adaptive_alignment=False)
    first = ADCSIDTokenizer(config, quick_training(epochs=3, max_seconds=0.0))
    report = first.fit(text_only)
    assert len(report.history) == 1  # the time budget stops after the first epoch
    second = ADCSIDTokenizer(config, quick_training(epochs=3, max_seconds=0.0))
    second.fit(text_only)
    assert first.token_names == ["s0", "t0", "b0", "b1", "b2"]
    assert np.array_equal(first.encode(text_only), second.encode(text_only))
    assert np.array_equal(first.importance(text_only), np.ones((len(features[BEHAVIOR]), 3), dtype=np.float32))
    no_behavior = ADCSIDTokenizer(small_config(behavior_experts=0), quick_training(epochs=1))
    no_behavior.fit(features)
    assert no_behavior.importance(features) is None and no_behavior.token_names == ["s0", "t0", "v0"]
    with pytest.raises(ValueError, match="behavior"):
        ADCSIDTokenizer(small_config(), quick_training(epochs=1)).fit({"text": features["text"]})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback of device='auto'")
def test_auto_device_trains_on_cpu_without_a_gpu(catalogue):
    features, _ = catalogue
    report = ADCSIDTokenizer(small_config(), quick_training(epochs=1, device="auto")).fit(features)
    assert report.device == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_encodes_like_the_cpu(catalogue, tmp_path):
    features, labels = catalogue
    tokenizer = ADCSIDTokenizer(small_config(), quick_training(device="auto"))
    report = tokenizer.fit(features)
    assert report.device.startswith("cuda") and tokenizer.model.norm_range.device.type == "cpu"
    tokenizer.save(tmp_path / "adc.pt")
    on_cpu = ADCSIDTokenizer.from_state(read_checkpoint(tmp_path / "adc.pt")[1]).encode(features)
    assert np.array_equal(tokenizer.encode(features), on_cpu)  # the fitted tokenizer encodes on the CPU
    on_gpu = tokenizer.to("cuda").encode(features)
    assert (on_gpu == on_cpu).mean() >= 0.999  # identical up to argmax ties
    assert purity(on_cpu[:, 0], labels) >= 0.9
