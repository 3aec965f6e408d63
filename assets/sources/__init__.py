"""Sources: the synthetic catalogue and the file readers that land rows into the raw tables (landing.py)."""
