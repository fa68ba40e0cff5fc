# Shortcuts for the README's commands (plain Python works without make).
.PHONY: run test bench

run:
	python3 -m venv .venv && .venv/bin/python -m pip install -r requirements.txt && .venv/bin/python server.py

test:
	python3 -m venv .venv && .venv/bin/python -m pip install -r requirements-dev.txt && .venv/bin/python -m pytest

bench:
	.venv/bin/python bench/ingest.py
