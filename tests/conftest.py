"""Shared fixtures: the real data folder, small normalised genomes, one thread for torch."""

from __future__ import annotations

import os
import subprocess
import sys
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


def run_snakemake(
    workdir: Path,
    *args: str,
    configfile: Path | None = None,
    cores: int = 1,
    timeout: int = 600,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """A real `snakemake` of this repository's workflow, run in `workdir` as a user would."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(workdir)]
    if configfile is not None:  # before --cores: --configfile takes every word up to the next flag
        cmd += ["--configfile", str(configfile)]
    cmd += ["--cores", str(cores)]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)
