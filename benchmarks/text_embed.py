"""Text encoder throughput: embed item texts with the model of params.yaml (features.text.model).

    .venv/bin/python benchmarks/text_embed.py               # Amazon Beauty titles + categories (12,101 items)
    .venv/bin/python benchmarks/text_embed.py --items 5000  # the first 5,000 of them

The last line printed is one JSON object: items, seconds, items_per_s, model, device, dim, batch_size.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sid_models.text_encoder import encode_texts, load_text_encoder, render_texts  # noqa: E402
from sid_models.devices import resolve_device  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_root = os.environ.get("SIDFLOW_DATA_ROOT") or str(ROOT.parent / "shared" / "data")
    parser.add_argument("--data-root", default=default_root, help="folder holding amazon-beauty/")
    parser.add_argument("--items", type=int, help="embed only the first N items")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    text = ((yaml.safe_load((ROOT / "params.yaml").read_text()) or {}).get("features") or {}).get("text") or {}
    model = text.get("model", "sentence-transformers/all-MiniLM-L6-v2")
    batch_size = args.batch_size or text.get("batch_size", 128)
    frame = pd.read_csv(Path(args.data_root) / "amazon-beauty" / "item_text.csv.gz", dtype=str, keep_default_na=False)
    frame = frame.head(args.items) if args.items else frame
    texts = render_texts(["{title}", "Categories: {categories}"],
                         {"title": frame.title.tolist(), "categories": frame.categories.tolist()})
    device = str(resolve_device(args.device))
    encoder = load_text_encoder(model, device=device)
    encode_texts(encoder, texts[:256], batch_size=batch_size)  # warm-up: first-call allocations and kernels
    started = time.perf_counter()
    vectors = encode_texts(encoder, texts, batch_size=batch_size)
    seconds = time.perf_counter() - started
    print(json.dumps({"items": len(texts), "seconds": round(seconds, 2), "items_per_s": round(len(texts) / seconds, 1),
                      "model": model, "device": device, "dim": int(vectors.shape[1]), "batch_size": batch_size,
                      "threads": args.threads}))


if __name__ == "__main__":
    main()
