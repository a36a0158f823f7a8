"""Faults a user meets in a real working directory: a second `snakemake` on a running one.

Snakemake locks the files a run will read and write (`.snakemake/locks`). A second run on the
same directory, e.g. the same command typed in another terminal, must refuse at once, naming
the lock, and leave every file alone: in particular the running job's half-written outputs,
which the profile's `rerun-incomplete` would otherwise delete and remake. The first run must
then end as if nothing had happened.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_snakemake
from safetensors.torch import load_file
from test_pipeline import TINY_TRAIN, simulated_sheet, tiny_config, write_workdir

pytestmark = pytest.mark.slow  # a real run up to pretraining: about a minute on 2 cores

MODEL = "hyena-micro"
PRETRAINED = f"results/pretrain/{MODEL}"
TARGET = f"{PRETRAINED}/model.safetensors"
STEPS = 150


def snapshot(workdir: Path) -> dict[str, tuple[int, int]]:
    """Every file of the directory (Snakemake's records and locks included): size, mtime."""
    files = {}
    for path in workdir.rglob("*"):
        if path.is_file():
            stat = path.stat()
            files[str(path.relative_to(workdir))] = (stat.st_size, stat.st_mtime_ns)
    return files


def test_second_run_is_refused_while_the_first_runs(tmp_path):
    config = tiny_config("config/genomes.tsv", predict={})
    config["models"] = {MODEL: config["models"][MODEL]}
    config["pretrain"] = {"steps": STEPS, "eval_sequences": 16, **TINY_TRAIN}
    write_workdir(tmp_path, config, simulated_sheet())
    command = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile")]
    command += ["-d", str(tmp_path), "--cores", "2", TARGET]
    log = tmp_path.parent / f"{tmp_path.name}.first.log"
    with open(log, "w") as out:
        # its own process group: snakemake and its jobs can be frozen (and killed) together
        first = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    frozen = False
    try:
        # running, and mid-job: the locks are taken and pretraining has begun its curve
        curve = tmp_path / PRETRAINED / "curve.tsv"
        deadline = time.monotonic() + 600
        while not (curve.exists() and list((tmp_path / ".snakemake/locks").glob("*"))):
            if first.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the first run ended or stalled before pretraining:\n{log.read_text()}"
                )
            time.sleep(0.02)
        # Frozen, the first run changes nothing, so any change below is the second run's.
        os.killpg(first.pid, signal.SIGSTOP)
        frozen = True
        assert not (tmp_path / TARGET).exists()  # pretraining is half done: an incomplete output
        before = snapshot(tmp_path)

        started = time.monotonic()
        second = run_snakemake(tmp_path, TARGET, cores=2, timeout=120)  # a hang fails here
        seconds = time.monotonic() - started
        text = second.stdout + second.stderr
        assert second.returncode != 0, text[-3000:]
        assert "Directory cannot be locked" in text and "--unlock" in text, text[-3000:]
        assert "localrule" not in text, text[-3000:]  # it started no job

        after = snapshot(tmp_path)
        gone = sorted(set(before) - set(after))
        changed = sorted(f for f in before if f in after and before[f] != after[f])
        added = sorted(f for f in set(after) - set(before) if not f.startswith(".snakemake/log/"))
        assert not gone and not changed and not added, (gone, changed, added, f"{seconds:.1f} s")

        os.killpg(first.pid, signal.SIGCONT)
        frozen = False
        assert first.wait(timeout=600) == 0, log.read_text()[-6000:]
    finally:
        if first.poll() is None:  # a failure above: never leave a frozen or running group
            if frozen:
                os.killpg(first.pid, signal.SIGCONT)
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()

    # the first run's outputs are whole: every step trained, weights readable, nothing left to do
    for name in ("config.json", "model.safetensors", "curve.tsv", "summary.json"):
        assert (tmp_path / PRETRAINED / name).stat().st_size > 0, name
    assert pd.read_csv(tmp_path / PRETRAINED / "curve.tsv", sep="\t")["step"].max() == STEPS
    assert load_file(tmp_path / TARGET)
    assert not list((tmp_path / ".snakemake/locks").glob("*"))
    rerun = run_snakemake(tmp_path, "-n", TARGET, timeout=300)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr, rerun.stdout[-3000:]
