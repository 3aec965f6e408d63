"""Software-defined assets, one module per stage (group)."""

from assets.behavior import behavior_embeddings, sasrec_model
from assets.content import content_embeddings
from assets.export import ranking_model_onnx
from assets.feature_checks import FEATURE_CHECKS
from assets.ingest import raw_interactions, raw_items
from assets.ranking import ranking_model
from assets.refresh import new_item_sids
from assets.retrieval import generative_retriever
from assets.sid_checks import SID_CHECKS
from assets.sid_tables import SID_TABLE_ASSETS
from assets.tokenizers import BASELINE_TOKENIZERS, sid_tokenizer
from assets.validated import item_stats, splits, validated_interactions, validated_items
from data_checks.checks import ASSET_CHECKS as VALIDATED_CHECKS

ALL_ASSETS = [raw_items, raw_interactions, validated_items, validated_interactions, item_stats, splits,
              content_embeddings, sasrec_model, behavior_embeddings, sid_tokenizer, *BASELINE_TOKENIZERS,
              *SID_TABLE_ASSETS, ranking_model, ranking_model_onnx, generative_retriever, new_item_sids]
ALL_CHECKS = [*VALIDATED_CHECKS, *FEATURE_CHECKS, *SID_CHECKS]
# The pipeline's groups in graph order; `refresh` (partitioned by landed batch) runs apart from them.
GROUPS = ("ingest", "validated", "features", "tokenizer", "sid_tables", "downstream", "export")
REFRESH_GROUP = "refresh"
