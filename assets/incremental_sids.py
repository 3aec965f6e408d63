"""SIDs for items that arrive after training: the frozen tokenizer encodes their features, no parameter moves.

Features of a new item, per modality of the last content_embeddings run:
- a `<modality>_embedding` column of the landed file, when it has one of the right dimension;
- else, for `text` computed by a sentence-transformers model, the item's text through the same template;
- else the catalogue's mean vector of that modality (flagged as fallback, as content_embeddings does).
Behavior: a new item has no interactions, so it gets what catalogue items without train interactions get, a
zero vector (norm 0). ADC-SID reads that as no behavioral evidence: its importance weights R(e_b) come out low
and downstream models lean on the content tokens.

Collision tokens continue each SID's group: a new item whose codes equal those of k items already in the
version gets token k (then k + 1, ... for several new ones, in item_id order), so every full SID stays unique
and no existing row changes.
"""

from dataclasses import dataclass, field

import duckdb
import numpy as np
import pyarrow as pa

from assets import landed_batch
from assets.feature_store import CONTENT_MANIFEST, features_dir, read_manifest, read_matrix
from assets.resources import FeatureSettings, SidflowHome
from assets.sid_tables import importance_rows, lookup_rows
from sid_models.sid_metrics import collision_tokens
from sid_models.text_encoder import encode_texts, load_text_encoder, render_texts
from sid_models.tokenizer import Tokenizer

ORIGIN = "incremental"


@dataclass
class BatchFeatures:
    features: dict[str, np.ndarray]
    fallback_rows: dict[str, int] = field(default_factory=dict)  # per modality: rows given a stand-in vector
    sources: dict[str, str] = field(default_factory=dict)  # per modality: where the vectors came from


def new_item_rows(con: duckdb.DuckDBPyConnection, version: str) -> tuple[list[str], dict[str, list]]:
    """The valid landed items that have no SID of `version` yet (item_id order), with their item fields."""
    table = con.sql(f"""
        SELECT * FROM {landed_batch.VALID}
        WHERE item_id NOT IN (SELECT item_id FROM sid_lookup WHERE tokenizer_version = ?)
        ORDER BY item_id""", params=[version]).to_arrow_table()
    return table.column("item_id").to_pylist(), table.to_pydict()


def batch_features(con: duckdb.DuckDBPyConnection, batch: landed_batch.LandedBatch, home: SidflowHome,
                   features: FeatureSettings, item_ids: list[str], fields: dict[str, list]) -> BatchFeatures:
    """Every tokenizer input of the new items, in the order of `item_ids` (see the module docstring)."""
    directory = features_dir(home.home_path)
    manifest = read_manifest(directory, CONTENT_MANIFEST)
    supplied = set(landed_batch.embedding_columns(con, batch.path))
    out = BatchFeatures({})
    for name, info in manifest.items():
        dim = int(info["dim"])
        column = name + landed_batch.EMBEDDING_SUFFIX
        if column in supplied:
            vectors, missing = landed_batch.read_embeddings(con, batch.path, column, item_ids, dim)
            out.sources[name] = f"file column {column}"
        elif name == "text" and _is_text_model(info):
            vectors, missing = _text_vectors(features, info, item_ids, fields, dim, home.device)
            out.sources[name] = f"text model {info['model']}"
        else:
            vectors, missing = np.zeros((len(item_ids), dim), np.float32), np.ones(len(item_ids), bool)
            out.sources[name] = "catalogue mean"
        if missing.any():
            vectors[missing] = _catalogue_mean(directory, name)
        out.features[name] = vectors
        out.fallback_rows[name] = int(missing.sum())
    behavior_dim = read_matrix(directory, "behavior").vectors.shape[1]
    out.features["behavior"] = np.zeros((len(item_ids), behavior_dim), np.float32)
    out.fallback_rows["behavior"] = len(item_ids)
    out.sources["behavior"] = "zero vector (no interactions yet)"
    return out


def continued_collisions(con: duckdb.DuckDBPyConnection, version: str, codes: np.ndarray) -> np.ndarray:
    """Collision tokens for new rows `codes` that follow the ones the version's SIDs already use."""
    taken = np.full(len(codes), -1, dtype=np.int64)
    if len(codes):
        con.register("new_sids", pa.table({"row": pa.array(np.arange(len(codes))),
                                           "sid": pa.array(codes.astype(np.int32).tolist(), pa.list_(pa.int32()))}))
        for row, highest in con.execute("""
                SELECT n.row, max(l.collision) FROM new_sids n
                JOIN sid_lookup l ON l.sid = n.sid AND l.tokenizer_version = ? GROUP BY n.row""", [version]).fetchall():
            taken[row] = highest
        con.unregister("new_sids")
    return taken + 1 + collision_tokens(codes)


def assign(con: duckdb.DuckDBPyConnection, version: str, tokenizer: Tokenizer, item_ids: list[str],
           inputs: BatchFeatures) -> tuple[pa.Table, pa.Table]:
    """(sid_lookup rows, sid_importance rows) of the new items; nothing is written."""
    codes = tokenizer.encode(inputs.features)
    collision = continued_collisions(con, version, codes)
    lookup = lookup_rows(item_ids, version, codes, tokenizer.token_names, origin=ORIGIN, collision=collision)
    importance = importance_rows(item_ids, version, tokenizer, tokenizer.importance(inputs.features))
    return lookup, importance


def _is_text_model(info: dict) -> bool:
    return not str(info.get("model", "")).startswith(("synthetic:", "file:", "attributes:"))


def _text_vectors(features: FeatureSettings, info: dict, item_ids: list[str], fields: dict[str, list], dim: int,
                  device: str) -> tuple[np.ndarray, np.ndarray]:
    texts = render_texts(features.text.template, fields)
    encoder = load_text_encoder(info["model"], device="cpu" if device == "auto" else device)
    vectors = encode_texts(encoder, texts, batch_size=features.text.batch_size)
    if vectors.shape[1] != dim:
        raise ValueError(f"text model {info['model']} gives {vectors.shape[1]} dimensions, the catalogue's "
                         f"text vectors have {dim}: materialise content_embeddings again")
    return vectors, np.array([not t for t in texts])


def _catalogue_mean(directory, name: str) -> np.ndarray:
    vectors = read_matrix(directory, name).vectors
    total = np.zeros(vectors.shape[1], np.float64)
    for start in range(0, len(vectors), 65_536):  # memory-mapped: a block at a time
        total += np.asarray(vectors[start:start + 65_536], np.float64).sum(axis=0)
    return (total / max(len(vectors), 1)).astype(np.float32)
