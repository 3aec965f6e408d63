"""The three baseline tokenizers (RQ-VAE, RQ-KMeans, OPQ) on a planted-cluster catalogue: the first token finds
the clusters, codes are seeded and survive a save/load round trip, and reconstruction beats predicting the mean."""

import numpy as np
import pytest
import torch

from sid_models.opq import OPQConfig, OPQTokenizer
from sid_models.rqkmeans import RQKMeansConfig, RQKMeansTokenizer
from sid_models.rqvae import RQVAEConfig, RQVAETokenizer
from sid_models.sid_metrics import quantization_metrics
from sid_models.tokenizer import BEHAVIOR, read_checkpoint
from sid_models.train_quantizer import cluster_sums, seeded_kmeans

CLUSTERS, PER_CLUSTER = 8, 150
# Twice as many codes as clusters: with K = 8, k-means' local optima merge two clusters in some seeds (purity
# 0.875), which says nothing about the tokenizers; with 16 each code should stay inside one cluster.
K = 16


def planted(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """8 clusters x 150 items; each modality is the cluster's centre in that modality plus noise, on different
    scales (standardisation must cope)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(CLUSTERS), PER_CLUSTER)
    features = {}
    for name, dim, scale in (("text", 24, 0.1), ("visual", 16, 5.0), (BEHAVIOR, 8, 1.0)):
        centres = rng.normal(size=(CLUSTERS, dim)) * 3
        features[name] = ((centres[labels] + rng.normal(size=(len(labels), dim))) * scale).astype(np.float32)
    return features, labels


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (arithmetic-mean normalisation) of two labelings."""
    joint = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(joint, (a, b), 1)
    joint /= joint.sum()
    pa, pb = joint.sum(1), joint.sum(0)
    nz = joint > 0
    mutual = (joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()
    entropy = lambda p: -(p[p > 0] * np.log(p[p > 0])).sum()  # noqa: E731
    return float(2 * mutual / (entropy(pa) + entropy(pb)))


def purity(codes: np.ndarray, labels: np.ndarray) -> float:
    return sum(np.bincount(labels[codes == c]).max() for c in np.unique(codes)) / len(labels)


MAKERS = {
    "rqvae": lambda seed=0, **kw: RQVAETokenizer(RQVAEConfig(
        encoder_hidden=(64, 32), latent_dim=8, levels=2, codebook_size=K, epochs=15, batch_size=128, lr=3e-3,
        seed=seed, device="cpu", **kw)),
    "rqkmeans": lambda seed=0, **kw: RQKMeansTokenizer(RQKMeansConfig(levels=2, codebook_size=K, seed=seed,
                                                                      device="cpu", **kw)),
    "opq": lambda seed=0, **kw: OPQTokenizer(OPQConfig(subspaces=4, codebook_size=K, opq_iterations=4, seed=seed,
                                                       device="cpu", **kw)),
}


@pytest.fixture(scope="module")
def data():
    return planted()


@pytest.fixture(scope="module")
def fitted(data):
    features, _ = data
    result = {}
    for kind, make in MAKERS.items():
        tokenizer = make()
        result[kind] = (tokenizer, tokenizer.fit(features), tokenizer.encode(features))
    return result


@pytest.mark.parametrize("kind", MAKERS)
def test_first_token_recovers_the_planted_clusters(kind, data, fitted):
    _, labels = data
    tokenizer, _, codes = fitted[kind]
    assert codes.shape == (len(labels), len(tokenizer.token_names)) and codes.dtype == np.int64
    assert purity(codes[:, 0], labels) > 0.95  # chance: 1/8
    assert nmi(codes[:, 0], labels) > 0.8  # 6/7 = 0.857 if each cluster were split evenly over two codes
    chance = nmi(np.random.default_rng(0).integers(0, K, len(labels)), labels)
    assert chance < 0.05
    metrics = quantization_metrics(codes, tokenizer.codebook_sizes)
    assert metrics["utilization_per_codebook"][0] >= 0.9
    assert metrics["utilization"] >= 0.9


@pytest.mark.parametrize("kind", MAKERS)
def test_reconstruction_beats_predicting_the_mean(kind, data, fitted):
    tokenizer, report, _ = fitted[kind]
    loss = tokenizer.reconstruction_loss(data[0])
    assert 0.0 <= loss < 0.5  # predicting the mean of the standardised input scores 1.0
    assert report.anti_collapse["standardised_inputs"] and report.anti_collapse["kmeans_init"]
    assert report.anti_collapse["dead_codes_reinitialised"] >= 0
    assert report.history and report.seconds > 0 and report.device == "cpu"


@pytest.mark.parametrize("kind", MAKERS)
def test_fit_is_seeded(kind, data, fitted):
    features, _ = data
    again = MAKERS[kind]()
    again.fit(features)
    assert np.array_equal(again.encode(features), fitted[kind][2])


@pytest.mark.parametrize("kind", MAKERS)
def test_save_and_load_give_identical_codes(kind, data, fitted, tmp_path):
    features, _ = data
    tokenizer, _, codes = fitted[kind]
    tokenizer.save(tmp_path / "tokenizer.pt")
    stored_kind, state = read_checkpoint(tmp_path / "tokenizer.pt")
    assert stored_kind == kind
    loaded = type(tokenizer).from_state(state)
    assert np.array_equal(loaded.encode(features), codes)
    assert loaded.token_names == tokenizer.token_names and loaded.codebook_sizes == tokenizer.codebook_sizes
    assert loaded.reconstruction_loss(features) == pytest.approx(tokenizer.reconstruction_loss(features))


@pytest.mark.parametrize("kind", MAKERS)
def test_encode_is_row_wise_and_batched(kind, data, fitted):
    features, _ = data
    tokenizer, _, codes = fitted[kind]
    rows = {name: matrix[100:107] for name, matrix in features.items()}
    assert np.array_equal(tokenizer.encode(rows), codes[100:107])
    tokenizer.config.encode_batch_size = 97  # blocks of rows give the same codes as one block
    try:
        assert np.array_equal(tokenizer.encode(features), codes)
    finally:
        tokenizer.config.encode_batch_size = 65536


@pytest.mark.parametrize("kind", MAKERS)
def test_missing_or_misshaped_modality_is_a_clear_error(kind, data, fitted):
    features, _ = data
    with pytest.raises(ValueError, match="lack modalities"):
        MAKERS[kind](modalities=("text", "image")).fit(features)
    tokenizer = fitted[kind][0]
    with pytest.raises(ValueError, match="lack modalities"):
        tokenizer.encode({name: m for name, m in features.items() if name != "visual"})
    with pytest.raises(ValueError, match="columns"):
        tokenizer.encode({**features, "visual": features["visual"][:, :5]})


def test_default_modalities(fitted):
    # Content-only baselines leave behavior out; RQ-KMeans (behavior-content aligned) reads it.
    assert fitted["rqvae"][0].scaler.names == ["text", "visual"]
    assert fitted["opq"][0].scaler.names == ["text", "visual"]
    assert fitted["rqkmeans"][0].scaler.names == ["behavior", "text", "visual"]
    with pytest.raises(ValueError, match="no content modality"):
        MAKERS["rqvae"]().fit({BEHAVIOR: np.zeros((10, 4), dtype=np.float32)})


def test_rqvae_gradients_reach_the_encoder_through_the_straight_through_estimator(data, fitted):
    tokenizer = fitted["rqvae"][0]
    model = tokenizer.model
    x = tokenizer.scaler.transform(data[0])[:64]
    model.zero_grad()
    model.train()
    try:
        model(x)["reconstruction"].backward()  # the decoder's loss alone, not the commitment term
    finally:
        model.eval()
        model.usage.zero_()
    first_layer = model.encoder[0].weight.grad
    assert first_layer is not None and torch.isfinite(first_layer).all() and first_layer.abs().sum() > 0
    assert model.codebooks.grad is None or model.codebooks.grad.abs().sum() == 0  # codewords learn from their own loss
    model.zero_grad()


def test_opq_rotation_is_orthogonal(fitted):
    rotation = fitted["opq"][0].rotation.double()
    assert torch.allclose(rotation @ rotation.T, torch.eye(len(rotation), dtype=torch.float64), atol=1e-5)


def test_opq_pads_and_projects_input_widths_that_m_does_not_divide(data):
    features, labels = data
    tokenizer = OPQTokenizer(OPQConfig(subspaces=3, codebook_size=8, opq_iterations=2, pca_dim=10, device="cpu"))
    report = tokenizer.fit(features)
    assert report.anti_collapse["rotated_width"] == 12  # 10 principal components padded to a multiple of 3
    codes = tokenizer.encode(features)
    assert codes.shape == (len(labels), 3)
    assert tokenizer.reconstruction_loss(features) < 1.0


def test_cluster_sums_agree_between_index_add_and_one_hot_products():
    generator = torch.Generator().manual_seed(0)
    x, index = torch.randn(500, 7, generator=generator), torch.randint(0, 9, (500,), generator=generator)
    by_index = cluster_sums(x, index, 10, one_hot=False)
    by_product = cluster_sums(x, index, 10, one_hot=True, chunk=64)
    assert torch.allclose(by_index[0], by_product[0], atol=1e-5) and torch.equal(by_index[1], by_product[1])
    assert by_index[1][9] == 0  # a cluster nobody chose


def test_lloyd_from_kmeans_plus_plus_seeds_recovers_blobs(data):
    features, labels = data
    x = torch.from_numpy(features[BEHAVIOR])
    result = seeded_kmeans(x, CLUSTERS * 2, iterations=50, seed=1)
    assert purity(result.assignment.numpy(), labels) > 0.95
    assert torch.equal(result.assignment, seeded_kmeans(x, CLUSTERS * 2, iterations=50, seed=1).assignment)
