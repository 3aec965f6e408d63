"""New items for the synthetic catalogue, as they would arrive after training: the landed-file layout of the
refresh (item fields plus `<modality>_embedding` vectors), drawn from the catalogue's own clusters so their
content looks like the items the tokenizer was fitted on. For demos, tests and benchmarks of the refresh."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from assets.sources import synthetic

_ARRIVALS = 100  # random stream, apart from the catalogue's


def centroids(p: synthetic.SyntheticParams, modality: str) -> np.ndarray:
    """The cluster centroids behind `synthetic.content_vectors` (the first draw of the modality's stream)."""
    rng = synthetic._rng(p, synthetic.MODALITIES[modality])
    return rng.standard_normal((p.clusters, p.content_dim), dtype=np.float32)


def arrivals(p: synthetic.SyntheticParams, count: int, first_index: int | None = None, batch: int = 0) -> pa.Table:
    """`count` new items with ids from `first_index` (default: just past the catalogue), clusters drawn by the
    catalogue's appeal, and one vector column per synthetic modality. `batch` varies the draw."""
    first = p.items if first_index is None else first_index
    if count < 0 or first < 0 or first + count > 10 ** synthetic.ITEM_ID_WIDTH:
        raise ValueError(f"cannot make {count} items from index {first}")
    rng = np.random.default_rng([p.seed, _ARRIVALS, batch])
    layout = synthetic._layout(p)
    cluster = rng.choice(p.clusters, size=count, p=layout.appeal)
    columns = {"item_id": pa.array([synthetic.item_id(first + i) for i in range(count)], pa.string()),
               "title": pa.array([f"New arrival {first + i} of line {c}" for i, c in enumerate(cluster)], pa.string()),
               "categories": pa.array([f"Beauty > New > Line {c}" for c in cluster], pa.string()),
               "brand": pa.array(["Newcomer"] * count, pa.string()),
               "description": pa.array(["Arrived after the tokenizer was trained."] * count, pa.string())}
    for modality in synthetic.MODALITIES:
        vectors = centroids(p, modality)[cluster] + np.float32(0.8) * rng.standard_normal(
            (count, p.content_dim), dtype=np.float32)
        columns[f"{modality}_embedding"] = pa.array(list(vectors), pa.list_(pa.float32()))
    return pa.table(columns)


def land_arrivals(landing: Path, p: synthetic.SyntheticParams, count: int) -> Path:
    """Write `count` new items to `landing` as `arrivals-<first index>-<count>.parquet`, ids after the catalogue
    and after every earlier arrivals file there; written aside, then renamed in, so a sensor never sees half."""
    earlier = [re.fullmatch(r"arrivals-(\d+)-(\d+)\.parquet", path.name) for path in landing.glob("arrivals-*")]
    first = max([p.items] + [int(m[1]) + int(m[2]) for m in earlier if m])
    table = arrivals(p, count, first, batch=first)
    landing.mkdir(parents=True, exist_ok=True)
    target = landing / f"arrivals-{first:0{synthetic.ITEM_ID_WIDTH}d}-{count}.parquet"
    partial = target.with_name(target.name + ".tmp")
    pq.write_table(table, partial)
    os.replace(partial, target)
    return target
