# Each target sets up .venv first (scripts/bootstrap.sh: creates it if missing, installs when the pins change).
.PHONY: setup demo test ui bench-ingest clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	.venv/bin/sidflow demo

test: setup
	.venv/bin/python -m pytest

ui: setup
	.venv/bin/sidflow ui

bench-ingest: setup
	.venv/bin/python benchmarks/ingest.py

clean:
	rm -rf .sidflow
