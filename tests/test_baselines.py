"""The baselines a language model must beat: exact k-mer features, learning, val selection,
the same outputs as a fine-tuning run, and determinism per seed."""

from __future__ import annotations

import itertools
import json
import logging
import subprocess
import sys
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from dnalm.baseline_cnn import char_ids
from dnalm.baselines import kmer_frequencies, run_baseline
from dnalm.windows import WINDOW_COLUMNS

KMER_LR = {"k": [1, 4], "C": [0.01, 1.0], "max_iter": 500}
CNN = {"epochs": 4, "batch_size": 32, "lr": 3e-3}


def brute_frequencies(seq: str, k: int) -> np.ndarray:
    """Overlapping k-mers over ACGT (case-folded), anything else skipped, as frequencies."""
    kmers = ["".join(p) for p in itertools.product("ACGT", repeat=k)]
    counts = Counter(
        seq[i : i + k].upper()
        for i in range(len(seq) - k + 1)
        if set(seq[i : i + k].upper()) <= set("ACGT")
    )
    row = np.array([counts[m] for m in kmers], dtype=float)
    return row / row.sum() if row.sum() else row


def test_kmer_frequencies_match_a_direct_count():
    rng = np.random.default_rng(0)
    seqs = ["".join(rng.choice(list("ACGTacgtNR"), int(rng.integers(0, 40)))) for _ in range(30)]
    seqs += ["ACGT", "NNNN", ""]
    got = kmer_frequencies([s.encode() for s in seqs], [1, 2, 3])
    want = np.array([np.concatenate([brute_frequencies(s, k) for k in (1, 2, 3)]) for s in seqs])
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_char_ids_are_hyenadna_ids_padded_and_cut():
    ids = char_ids([b"ACGTNa", b"RC"], 4)
    assert ids.tolist() == [[7, 8, 9, 10], [6, 8, 4, 4]]


def gc_windows(tmp_path, n: int, seed: int) -> dict[str, str]:
    """A labelled-sequence task (sequences inline): label 'gc' = GC-rich."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, size in (("train", n), ("val", n // 2), ("test", n // 2)):
        y = np.arange(size) % 2
        seqs = [
            "".join(
                rng.choice(list("ACGT"), 100, p=[0.2, 0.3, 0.3, 0.2] if v else [0.3, 0.2, 0.2, 0.3])
            )
            for v in y
        ]
        table = pd.DataFrame(
            {
                "genome": "t",
                "chrom": [f"{split}{i}" for i in range(size)],
                "start": 0,
                "end": 100,
                "strand": "+",
                "label": np.where(y == 1, "gc", "at"),
                "label_id": y,
                "group": [f"g{i % 7}" for i in range(size)],
                "sequence": seqs,
            }
        )[[*WINDOW_COLUMNS, "sequence"]]
        paths[split] = str(tmp_path / f"{split}.parquet")
        table.to_parquet(paths[split])
    return paths


@pytest.mark.parametrize(("name", "settings"), [("kmer_lr", KMER_LR), ("cnn", CNN)])
def test_baselines_learn_select_on_val_and_write_run_outputs(tmp_path, caplog, name, settings):
    windows = gc_windows(tmp_path, 400, 0)
    caplog.set_level("INFO", logger="dnalm")
    args = {
        "task": "gc",
        "labels": ["at", "gc"],
        "windows": windows,
        "genome_paths": {},
        "select_on": "auroc",
        "log": logging.getLogger("dnalm"),
    }
    metrics, predictions = run_baseline(name, settings, seed=0, **args)
    assert metrics["test"]["auroc"] > 0.9 and metrics["val"]["auroc"] > 0.9
    assert (metrics["model"], metrics["init"], metrics["selected_on"]) == (
        name,
        "baseline",
        "auroc",
    )
    test = pd.read_parquet(windows["test"])
    assert list(predictions.columns) == [
        *("genome", "chrom", "start", "end", "label", "group"),
        *("prob_at", "prob_gc", "predicted"),
    ]
    assert predictions["chrom"].tolist() == test["chrom"].tolist()
    np.testing.assert_allclose(predictions[["prob_at", "prob_gc"]].sum(axis=1), 1.0, atol=2e-6)
    # the chosen setting is the first with the best val AUROC the log reports
    logged = [
        (line.split(":")[0].split()[-1], float(line.split("auroc ")[1].split()[0]))
        for line in caplog.messages
        if line.startswith(("kmer_lr C=", "cnn epoch"))
    ]
    chosen = max(logged, key=lambda item: item[1])[0]
    key = "C" if name == "kmer_lr" else "best_epoch"
    assert str(chosen) == (
        f"C={metrics['selection'][key]:g}"
        if key == "C"
        else f"{metrics['selection'][key]}/{settings['epochs']}"
    )
    again, _ = run_baseline(name, settings, seed=0, **args)
    assert again["test"] == metrics["test"] and again["val"] == metrics["val"]
    if name == "cnn":
        other, _ = run_baseline(name, settings, seed=1, **args)
        assert other["val"] != metrics["val"]  # a seed draws its own weights and batch order


def test_an_unknown_baseline_fails():
    with pytest.raises(ValueError, match="unknown baseline 'svm'; choose from kmer_lr, cnn"):
        run_baseline(
            "svm", {}, task="t", seed=0, labels=[], windows={}, genome_paths={}, select_on="loss"
        )


def test_a_kmer_lr_run_never_imports_torch(tmp_path):
    """A k-mer job starts ~2.8 s of CPU faster without torch (the CNN's module alone imports it):
    the baseline script's imports and a whole kmer_lr run, in a fresh interpreter."""
    windows = gc_windows(tmp_path, 60, 0)
    code = (
        "import json, sys\n"
        "import dnalm.files, dnalm.runtime\n"  # the baseline script's other imports
        "from dnalm.baselines import run_baseline\n"
        f"m, p = run_baseline('kmer_lr', {KMER_LR!r}, task='gc', seed=0, labels=['at', 'gc'], "
        f"windows={windows!r}, genome_paths={{}}, select_on='auroc')\n"
        "print(json.dumps([m['test']['auroc'], 'torch' in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    auroc, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert auroc > 0.5 and torch_loaded is False
