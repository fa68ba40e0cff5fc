"""Fixtures for the handler tests: the sample payloads under tests/samples."""

import json
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


@pytest.fixture
def load_sample():
    """Return a loader: load_sample("evolution/<file>.json") -> the parsed payload."""

    def load(name: str) -> dict:
        return json.loads((SAMPLES / name).read_text(encoding="utf-8"))

    return load
