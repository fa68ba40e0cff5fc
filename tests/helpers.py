"""Helpers the tests share: the real provider samples under tests/samples."""

from __future__ import annotations

import json
import os
from pathlib import Path

SAMPLES = Path(__file__).parent / "samples"


def sample_path(name: str) -> Path:
    return SAMPLES / name


def load_sample(name: str) -> dict:
    """A real provider payload from tests/samples, e.g. "meta/fixture_image.json"."""
    return json.loads(sample_path(name).read_text(encoding="utf-8"))


def all_samples() -> list[str]:
    return sorted(
        str(path.relative_to(SAMPLES)).replace(os.sep, "/")
        for path in SAMPLES.rglob("*.json")
    )
