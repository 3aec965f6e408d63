"""k-means: recovers planted clusters, is seeded, uses every centroid, and agrees with a direct distance."""

import pytest
import torch

from sid_models.kmeans import assign, kmeans


def blobs(n_per: int = 200, k: int = 8, dim: int = 16, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, dim, generator=generator) * 10
    labels = torch.arange(k).repeat_interleave(n_per)
    return centres[labels] + torch.randn(len(labels), dim, generator=generator), labels


def purity(assignment: torch.Tensor, labels: torch.Tensor) -> float:
    hits = sum(torch.bincount(labels[assignment == c]).max().item() for c in assignment.unique())
    return hits / len(labels)


@pytest.mark.parametrize("cosine", [False, True])
def test_recovers_planted_clusters_and_is_seeded(cosine):
    x, labels = blobs()
    result = kmeans(x, 8, seed=3, cosine=cosine)
    assert purity(result.assignment, labels) > 0.95
    assert torch.equal(result.assignment, kmeans(x, 8, seed=3, cosine=cosine).assignment)
    assert result.centroids.shape == (8, 16)


def test_every_centroid_is_used_even_with_more_clusters_than_blobs():
    x, _ = blobs(n_per=50, k=3)
    result = kmeans(x, 40, seed=0)
    assert len(result.assignment.unique()) == 40


def test_assign_matches_a_direct_computation():
    x, _ = blobs(n_per=30, k=4)
    centroids = x[:7].clone()
    index, distance = assign(x, centroids, chunk=17)
    direct = torch.cdist(x, centroids) ** 2
    assert torch.equal(index, direct.argmin(1))
    assert torch.allclose(distance, direct.min(1).values, rtol=1e-4, atol=1e-3)
    cos_index, cos_distance = assign(x, centroids, cosine=True, chunk=5)
    cosine = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(centroids, dim=1).T
    assert torch.equal(cos_index, cosine.argmax(1))
    assert torch.allclose(cos_distance, 1 - cosine.max(1).values, atol=1e-6)


def test_rejects_empty_input():
    with pytest.raises(ValueError, match="non-empty"):
        kmeans(torch.empty(0, 3), 2)
