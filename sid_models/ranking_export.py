"""ONNX export of the ranker: one self-contained file (weights inside) with a dynamic batch axis, scoring click
probabilities, checked by `onnx.checker` and against PyTorch on held-out rows.

The graph's inputs are those of `PPNetRanker.forward` (`ranking_data.RANKER_INPUTS`) and its output is
`probability`; `metadata` (feature set, tokenizer version, token names, ...) goes into the model's
metadata_props, where `ranking_scorer` reads it back.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from sid_models.ranking import PPNetRanker
from sid_models.ranking_data import RANKER_INPUTS as INPUT_NAMES
from sid_models.ranking_scorer import onnx_session
from sid_models.train_ranking import RankerInputs, predict
OUTPUT_NAME = "probability"


class ProbabilityHead(nn.Module):
    def __init__(self, ranker: PPNetRanker):
        super().__init__()
        self.ranker = ranker

    # Named arguments, not *inputs: torch.export matches dynamic_shapes to the signature one input at a time.
    def forward(self, user_index, item_index, sid_codes, sid_weights, history_index, history_codes, history_weights):
        return torch.sigmoid(self.ranker(user_index, item_index, sid_codes, sid_weights, history_index, history_codes,
                                         history_weights))


def export_ranker(model: PPNetRanker, path: Path, example: RankerInputs, metadata: dict[str, object]) -> Path:
    """Write `path` (.onnx). `example` needs at least 2 rows (a batch of 1 would be specialised away)."""
    if len(example) < 2:
        raise ValueError("the export example needs at least 2 rows")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter, not ours to fix
        torch.onnx.export(ProbabilityHead(model.cpu().eval()), example.slice(0, min(len(example), 64)), str(path),
                          dynamo=True, external_data=False, input_names=list(INPUT_NAMES),
                          output_names=[OUTPUT_NAME], dynamic_shapes=tuple({0: batch} for _ in INPUT_NAMES),
                          verbose=False)
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in metadata.items():
        graph.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.checker.check_model(graph, full_check=True)
    onnx.save(graph, str(path))
    return path


def op_types(path: Path) -> set[str]:
    """Every operator type in the graph, subgraphs (If/Loop/Scan bodies) included."""
    found: set[str] = set()

    def visit(graph: onnx.GraphProto) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attribute in node.attribute:
                for sub in [attribute.g, *attribute.graphs] if attribute.HasField("g") else attribute.graphs:
                    visit(sub)

    visit(onnx.load(str(path)).graph)
    return found


def parity(path: Path, model: PPNetRanker, inputs: RankerInputs, batch_size: int = 4096) -> float:
    """Largest |onnxruntime - PyTorch| probability over `inputs`."""
    session = onnx_session(path)
    expected = predict(model, inputs)
    worst = 0.0
    for start in range(0, len(inputs), batch_size):
        feed = {name: t.numpy() for name, t in zip(INPUT_NAMES, inputs.slice(start, start + batch_size))}
        got = session.run([OUTPUT_NAME], feed)[0]
        worst = max(worst, float(np.abs(got - expected[start:start + batch_size]).max()))
    return worst
