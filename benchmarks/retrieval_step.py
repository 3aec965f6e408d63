"""Training-step time of the generative retriever in fp32 and with bf16 autocast (`retrieval.train.amp`), on
this machine's CPU (or --device cuda), for the compact size of params.yaml, a wide one (d_model 128, feed-forward
512) and TIGER's.

    .venv/bin/python benchmarks/retrieval_step.py
    .venv/bin/python benchmarks/retrieval_step.py --threads 2 --batch 256 --repeats 20

One step is `train_step`, as `train_retriever` runs it per batch: the trie paths of the targets (with
`trie_softmax`, the default), the weighted loss over an ADC-SID-shaped target (six levels of 100 codes and a
collision level of 3), backward, gradient clipping and an AdamW update. Histories are full (20 items), so the
times are an upper bound for Beauty's mostly short histories. The median of --repeats steps after 3 warm-up
steps; fp32 and bf16 alternate in blocks so that both see the same machine load.

The last line printed is one JSON object: per size, `fp32_ms`, `bf16_ms` and `speedup` (fp32 / bf16).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.retrieval import TIGER  # noqa: E402
from sid_models.retriever import RetrieverConfig, SidRetriever  # noqa: E402
from sid_models.sid_trie import SidTrie  # noqa: E402
from sid_models.train_retriever import train_step  # noqa: E402

CODEBOOK_SIZES = [100, 100, 100, 100, 100, 100, 3]
COMPACT = yaml.safe_load((ROOT / "params.yaml").read_text())["retrieval"]["model"]
SIZES = {"compact": COMPACT, "wide": {**COMPACT, "d_model": 128, "d_head": 32, "d_ff": 512}, "tiger": TIGER}


def step_seconds(model: SidRetriever, optimizer: torch.optim.Optimizer, history: torch.Tensor,
                 target: torch.Tensor, weights: torch.Tensor, amp_dtype: torch.dtype | None, trie: SidTrie) -> float:
    started = time.perf_counter()
    train_step(model, optimizer, trie, history, target, weights, amp_dtype)
    if history.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--batch", type=int, default=256, help="examples per step (default 256, the Beauty setting)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per precision (default 20)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    sizes = torch.tensor(CODEBOOK_SIZES)
    history = (torch.rand(args.batch, 20, len(sizes), generator=generator) * sizes).long().to(device)
    target = (torch.rand(args.batch, len(sizes), generator=generator) * sizes).long().to(device)
    weights = torch.ones(args.batch, len(sizes), device=device)
    trie = SidTrie.build(np.unique(target.cpu().numpy(), axis=0), CODEBOOK_SIZES)  # the targets as the catalogue
    results: dict = {"device": str(device), "threads": args.threads, "batch": args.batch, "history": 20}
    for name in args.sizes:
        torch.manual_seed(0)
        model = SidRetriever(RetrieverConfig(codebook_sizes=CODEBOOK_SIZES, **SIZES[name])).to(device).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for _ in range(2):  # alternating blocks: fp32, bf16, fp32, bf16
            for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
                for repeat in range(3 + args.repeats // 2):
                    seconds = step_seconds(model, optimizer, history, target, weights, dtype, trie)
                    if repeat >= 3:  # warm-up steps are not timed
                        times[precision].append(seconds)
        fp32, bf16 = (1000 * float(np.median(times[key])) for key in ("fp32", "bf16"))
        results[name] = {"fp32_ms": round(fp32, 1), "bf16_ms": round(bf16, 1), "speedup": round(fp32 / bf16, 2),
                         **SIZES[name]}
        print(json.dumps({name: results[name]}), file=sys.stderr, flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
