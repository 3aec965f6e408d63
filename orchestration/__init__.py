"""Dagster wiring: Definitions, resources from settings, jobs and the `sidflow` command line."""
