"""The Definitions that `dagster dev -m orchestration.definitions` (and `sidflow ui`) load. Settings come
from the environment: SIDFLOW_HOME, SIDFLOW_CONFIG, SIDFLOW_PARAMS, SIDFLOW_DATA_ROOT, SIDFLOW_DEVICE."""

from orchestration.build import build_definitions
from orchestration.settings import load_settings

defs = build_definitions(load_settings())
