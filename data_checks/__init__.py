"""Data-quality rules, Great Expectations suites and the Dagster asset checks built on them."""
