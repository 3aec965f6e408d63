"""Group `features`, content side: one float32 matrix per content modality, in catalogue order."""

import time

import dagster as dg
import numpy as np
from dagster_duckdb import DuckDBResource

from assets.feature_files import load_attributes, load_vectors
from assets.feature_store import CONTENT_MANIFEST, catalogue_item_ids, features_dir, write_manifest, write_matrix
from assets.resources import ITEM_FIELDS, CatalogueSource, FeatureSettings, SidflowHome
from assets.sources import synthetic
from assets.sources.landing import synthetic_params
from data_checks.checks import WAREHOUSE_POOL
from sid_models.attributes import attribute_vectors
from sid_models.text_encoder import (TextModelUnavailable, encode_texts, load_text_encoder, render_texts,
                                     template_fields)
from sid_models.devices import resolve_device

GROUP = "features"


@dg.asset(group_name=GROUP, deps=["items"], pool=WAREHOUSE_POOL, kinds={"numpy"})
def content_embeddings(context: dg.AssetExecutionContext, warehouse: DuckDBResource, home: SidflowHome,
                       source: CatalogueSource, features: FeatureSettings) -> dg.MaterializeResult:
    """One matrix per content modality under `artifacts/features/<modality>.npy` (rows: `items` by item_id,
    listed in `<modality>.items.parquet`). The synthetic catalogue supplies `text` and `visual` vectors;
    file sources get `text` from the item fields and a sentence-transformers model, plus any vector and
    attribute files in the `features` config. Items a file lacks get the modality's mean, flagged."""
    fields = template_fields(features.text.template)
    unknown = sorted(set(fields) - set(ITEM_FIELDS))
    if unknown:
        raise dg.Failure(f"features.text.template names {unknown}; item fields are {', '.join(ITEM_FIELDS)}")
    with warehouse.get_connection() as con:
        item_ids = catalogue_item_ids(con)
        text_columns = (con.sql(f"SELECT {', '.join(fields)} FROM items ORDER BY item_id").to_arrow_table()
                        .to_pydict() if source.kind == "files" and features.text.enabled else None)
    directory = features_dir(home.home_path)
    written: dict[str, dict] = {}

    def keep(name: str, vectors: np.ndarray, fallback: np.ndarray, **details) -> None:
        if name in written:
            raise dg.Failure(f"content modality {name!r} is configured twice")
        written[name] = {**write_matrix(directory, name, item_ids, vectors, fallback), **details}
        context.log.info(f"content modality {name}: {vectors.shape[0]} x {vectors.shape[1]}")

    if source.kind == "synthetic":
        params = synthetic_params(source)
        index = np.array([int(i.removeprefix(synthetic.ITEM_ID_PREFIX)) for i in item_ids], dtype=np.int64)
        for name in synthetic.MODALITIES:
            keep(name, synthetic.content_vectors(params, name)[index], np.zeros(len(item_ids), bool),
                 model=f"synthetic:{name}")
    elif features.text.enabled:
        keep("text", *_text_vectors(context, home, features, item_ids, text_columns), model=features.text.model,
             template=" | ".join(features.text.template))
    for spec in features.vector_files:
        vectors, fallback, extra = load_vectors(spec, item_ids)
        keep(spec.name, vectors, fallback, model=f"file:{spec.path}", unmatched_file_rows=extra)
    for spec in features.attribute_files:
        attributes, extra = load_attributes(spec, item_ids)
        vectors, vocabulary = attribute_vectors(attributes, dim=spec.dim)
        keep(spec.name, vectors, np.array([not a for a in attributes]), model=f"attributes:{spec.path}",
             distinct_attributes=vocabulary, unmatched_file_rows=extra)
    if not written:
        raise dg.Failure("no content modality: enable features.text or list vector_files / attribute_files")
    write_manifest(directory, CONTENT_MANIFEST, written)
    return dg.MaterializeResult(metadata={
        "modalities": dg.MetadataValue.json(written),
        "dagster/row_count": len(item_ids),
        **{f"{name}_dim": info["dim"] for name, info in written.items()},
        **{f"{name}_content_hash": info["content_hash"] for name, info in written.items()}})


def _text_vectors(context, home: SidflowHome, features: FeatureSettings, item_ids: list[str],
                  columns: dict) -> tuple[np.ndarray, np.ndarray]:
    texts = render_texts(features.text.template, columns)
    device = resolve_device(home.device)
    try:
        encoder = load_text_encoder(features.text.model, device=str(device))
    except TextModelUnavailable as err:
        raise dg.Failure(description=str(err)) from err
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - started, 1e-9)
        context.log.info(f"text embeddings: {done}/{total} items ({rate:.0f} items/s, {device})")

    vectors = encode_texts(encoder, texts, batch_size=features.text.batch_size, progress=progress)
    return vectors, np.array([not t for t in texts])  # an item with no text at all is flagged
