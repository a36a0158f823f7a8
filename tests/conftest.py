"""Shared fixtures: the real data folder, small normalised genomes, one thread for torch, and
the shipped configs' job graphs, planned once per session."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    import torch

    torch.set_num_threads(1)


def require_data(*paths: Path) -> None:
    """Skip a test whose real data is not here, as on a user's machine; fail instead where the
    data must be (CI sets DNALM_REQUIRE_DATA=1), so that a skip never hides a lost test."""
    missing = [str(p) for p in paths if not Path(p).exists()]
    if not missing:
        return
    why = f"real data {', '.join(missing)} is not present (see ../shared/data/README.md)"
    if os.environ.get("DNALM_REQUIRE_DATA") == "1":
        pytest.fail(f"{why}, but DNALM_REQUIRE_DATA=1 says it must be")
    pytest.skip(why)


@pytest.fixture
def shared_data() -> Path:
    require_data(SHARED_DATA)
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


@pytest.fixture(scope="session")
def planned_dag() -> Callable[[str], str]:
    """`snakemake --dag` (DOT text) of a shipped config, planned at most once per session
    whichever tests read it: the study alone takes several seconds to plan."""

    @functools.cache
    def plan(configfile: str) -> str:
        out = run_snakemake(ROOT, "--dag", configfile=ROOT / configfile, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        assert out.stdout.startswith("digraph"), out.stdout[:500]
        return out.stdout

    return plan


def dag_jobs(dot: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """Job id -> rule (a node label's first line), and the job edges (from, to), of
    `snakemake --dag` output, read without graphviz."""
    jobs = {m[1]: m[2] for m in re.finditer(r'^\s*(\d+)\[label = "([^"\\]+)', dot, re.M)}
    edges = {(m[1], m[2]) for m in re.finditer(r"^\s*(\d+) -> (\d+)", dot, re.M)}
    return jobs, edges
