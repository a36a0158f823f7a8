"""Shared fixtures: the real data folder, small normalised genomes, one thread for torch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.exists():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


def write_genome(directory: Path, name: str, records: list[tuple[str, str]]) -> Path:
    """A normalised (bgzip + .fai/.gzi) genome made from literal records."""
    from dnalm.fasta import normalise_fasta

    raw = directory / f"{name}.fa"
    raw.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in records))
    out = directory / f"{name}.fa.gz"
    normalise_fasta(raw, out)
    raw.unlink()
    return out
