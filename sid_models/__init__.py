"""Models and training code in plain PyTorch/NumPy (never imports dagster or duckdb)."""
