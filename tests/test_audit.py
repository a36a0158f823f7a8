"""Near-duplicate audit: exact against brute force, real isolates, and the workflow rule."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT, run_snakemake, write_genome

from dnalm import audit, kmers
from dnalm.audit import (
    AuditSettings,
    NearDuplicateError,
    audit_task,
    audit_windows,
    check_audit,
    kmer_profile,
    max_shared_fraction,
    summarise_audit,
)
from dnalm.fasta import read_fasta

_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def brute_kmers(seq: str, k: int) -> set[str]:
    seq = seq.upper().replace("U", "T")
    out = set()
    for i in range(len(seq) - k + 1):
        word = seq[i : i + k]
        if set(word) <= set("ACGT"):
            out.add(min(word, word.translate(_COMPLEMENT)[::-1]))
    return out


def mutate(rng: random.Random, seq: str, rate: float) -> str:
    return "".join(rng.choice("ACGTNacgt") if rng.random() < rate else c for c in seq)


def scores(test: list[str], train: list[str], k: int, **kw) -> pd.DataFrame:
    return max_shared_fraction(
        kmer_profile([s.encode() for s in test], k),
        kmer_profile([s.encode() for s in train], k),
        **kw,
    )


# --------------------------------------------------------------------------- k-mers


def test_kmers_are_canonical_case_blind_and_stay_inside_windows() -> None:
    k = 8
    seq = "ACGTTGCAAGGCTTAC"
    rc = seq.translate(_COMPLEMENT)[::-1]
    a, b = kmer_profile([seq.encode()], k), kmer_profile([rc.lower().encode()], k)
    assert a.count == b.count == 1
    assert np.array_equal(np.sort(a.kmers), np.sort(b.kmers))
    assert len(a.kmers) == len(brute_kmers(seq, k))
    # two windows: no k-mer spans the boundary, N breaks k-mers, short windows have none
    prof = kmer_profile([b"AAAAAAAAAA", b"CCCCCCCCCC", b"ACGTNACGTACGTA", b"ACG"], k)
    assert prof.count == 4
    assert np.bincount(prof.windows, minlength=4).tolist() == [1, 1, 2, 0]


@pytest.mark.parametrize("k", [8, 13, 21, 31])
def test_max_shared_matches_brute_force(k: int) -> None:
    rng = random.Random(k)
    base = "".join(rng.choice("ACGT") for _ in range(600))
    train = [mutate(rng, base[i : i + 90], 0.03) for i in range(0, 500, 37)]
    train += ["".join(rng.choice("ACGTN") for _ in range(rng.randint(0, 120))) for _ in range(20)]
    test = [mutate(rng, base[i : i + 70], 0.05) for i in range(0, 520, 29)]
    test += ["A" * 40, "", "NNNNACGT", base[:k].lower()]
    got = scores(test, train, k, max_kmer_windows=10**6)
    train_sets = [brute_kmers(s, k) for s in train]
    for i, seq in enumerate(test):
        mine = brute_kmers(seq, k)
        best = max((len(mine & t) for t in train_sets), default=0)
        assert got["kmers"][i] == len(mine)
        assert got["shared_kmers"][i] == best
        if mine:
            assert got["max_shared"][i] == pytest.approx(best / len(mine))
        else:
            assert np.isnan(got["max_shared"][i])
        if best:
            assert len(mine & train_sets[got["nearest"][i]]) == best
        else:
            assert got["nearest"][i] == -1


def test_small_batches_and_chunks_give_the_same_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    base = "".join(rng.choice("ACGT") for _ in range(2000))
    train = [mutate(rng, base[i : i + 100], 0.02) for i in range(0, 1900, 50)] * 3
    test = [mutate(rng, base[i : i + 100], 0.02) for i in range(25, 1900, 75)]
    expected = scores(test, train, 11)
    monkeypatch.setattr(kmers, "_BATCH_BASES", 150)
    monkeypatch.setattr(audit, "_CHUNK_PAIRS", 7)
    pd.testing.assert_frame_equal(scores(test, train, 11), expected)


def test_repeat_kmers_count_as_shared_without_a_window() -> None:
    train = ["ACGTACGGTTCA" + "AAAAAAAAAAAA", "TTGACCATGGCA" + "AAAAAAAAAAAA"]
    test = ["A" * 24]
    exact = scores(test, train, 8)
    assert (exact["kmers"][0], exact["shared_kmers"][0], exact["nearest"][0]) == (1, 1, 0)
    capped = scores(test, train, 8, max_kmer_windows=1)  # poly-A is in 2 windows: a repeat
    assert (capped["repeat_kmers"][0], capped["shared_kmers"][0], capped["nearest"][0]) == (
        1,
        1,
        -1,
    )
    assert capped["max_shared"][0] == 1.0


def test_settings_are_checked() -> None:
    for bad in ({"k": 7}, {"k": 32}, {"min_shared": 0}, {"max_fraction": 1.5}):
        with pytest.raises(ValueError, match="audit"):
            AuditSettings(**bad)
    with pytest.raises(ValueError, match="k-mer lengths differ"):
        max_shared_fraction(kmer_profile([b"ACGTACGTAC"], 8), kmer_profile([b"ACGTACGTAC"], 9))


# --------------------------------------------------------------------------- tables


def test_audit_windows_reads_genomes_and_names_the_nearest_window(tmp_path: Path) -> None:
    rng = random.Random(11)
    shared = "".join(rng.choice("ACGT") for _ in range(3000))
    other = "".join(rng.choice("ACGT") for _ in range(3000))
    paths = {
        "a": write_genome(tmp_path, "a", [("chr1", shared)]),
        "b": write_genome(tmp_path, "b", [("x", other), ("y", mutate(rng, shared, 0.01))]),
    }
    train = pd.DataFrame(
        {
            "genome": "a",
            "chrom": "chr1",
            "start": np.arange(0, 2800, 200),
            "end": np.arange(200, 3000, 200),
            "strand": "+",
            "label": "host",
            "group": "ga",
        }
    )
    starts = np.array([0, 1000, 2000, 300, 1300])
    test = pd.DataFrame(
        {
            "genome": "b",
            "chrom": ["x", "x", "x", "y", "y"],
            "start": starts,
            "end": starts + 200,
            "strand": ["+", "+", "+", "-", "+"],
            "label": ["virus", "virus", "virus", "host", "host"],
            "group": "gb",
        }
    )
    per = audit_windows(train, test, paths, AuditSettings(k=15))
    assert per["max_shared"][:3].max() < 0.05  # unrelated sequence
    assert (per["max_shared"][3:] > 0.4).all()  # a 1%-mutated copy, either strand
    # window y:1300-1500 overlaps train chr1:1200-1400 and 1400-1600 by half each
    assert per.loc[4, "nearest_start"] in (1200, 1400)
    assert per.loc[4, "nearest_genome"] == "a" and per.loc[4, "nearest_group"] == "ga"
    assert per.loc[0, "nearest_genome"] is None or per.loc[0, "max_shared"] > 0

    settings = AuditSettings(k=15, min_shared=0.4)
    summary = summarise_audit(per, settings, "t")
    assert summary["label"].tolist() == ["all", "host", "virus"]
    row = summary.set_index("label").loc["all"]
    assert (row["test_windows"], row["audited"], row["near_duplicates"]) == (5, 5, 2)
    assert row["near_duplicate_fraction"] == pytest.approx(0.4)
    check_audit(summary, settings)  # no threshold: never fails
    check_audit(summary, AuditSettings(k=15, min_shared=0.4, max_fraction=0.4))  # equal: passes
    with pytest.raises(NearDuplicateError, match=r"task 't': 2 of 5 test windows \(40.0%\)"):
        check_audit(summary, AuditSettings(k=15, min_shared=0.4, max_fraction=0.1))


def test_inline_sequences_are_audited_too() -> None:
    rng = random.Random(5)
    seqs = ["".join(rng.choice("ACGT") for _ in range(150)) for _ in range(6)]
    train = pd.DataFrame({"sequence": seqs[:4], "label": "0"})
    test = pd.DataFrame({"sequence": [seqs[1], seqs[4], seqs[5][:10]], "label": ["1", "0", "0"]})
    summary, per = audit_task(train, test, {}, AuditSettings(), "labelled")
    assert per["max_shared"].tolist()[:2] == [1.0, 0.0] and np.isnan(per["max_shared"][2])
    assert per["nearest"].tolist() == [1, -1, -1]
    all_row = summary.set_index("label").loc["all"]
    assert (all_row["audited"], all_row["near_duplicates"]) == (2, 1)


def test_empty_splits() -> None:
    empty = pd.DataFrame({"sequence": pd.Series([], dtype=str), "label": pd.Series([], dtype=str)})
    some = pd.DataFrame({"sequence": ["ACGT" * 10], "label": ["a"]})
    summary, per = audit_task(empty, some, {}, AuditSettings(), "t")
    assert per["max_shared"].tolist() == [0.0] and summary["near_duplicates"].tolist() == [0]
    summary, per = audit_task(some, empty, {}, AuditSettings(max_fraction=0.0), "t")
    assert len(per) == 0 and summary["audited"].tolist() == [0]
    check_audit(summary, AuditSettings(max_fraction=0.0))


# --------------------------------------------------------------------------- real isolates


def _isolate_windows(path: Path, first: int, last: int, length: int = 300) -> pd.DataFrame:
    rows = []
    for i, (rid, seq) in enumerate(read_fasta(path)):
        if first <= i < last:
            rows += [(rid, seq[s : s + length]) for s in range(0, len(seq) - length + 1, length)]
    return pd.DataFrame(rows, columns=["genome", "sequence"]).assign(label=path.stem[-5:])


def test_isolates_of_one_species_are_near_duplicates_of_each_other(shared_data: Path) -> None:
    isolates = shared_data / "genomes" / "viral" / "nextclade_isolates"
    zika = isolates / "community__itps__zikav.fasta"
    denv = isolates / "community__v-gen-lab__dengue__denv1.fasta"
    train = _isolate_windows(zika, 0, 6)
    same = _isolate_windows(zika, 6, 10)  # other isolates of the same species
    other = _isolate_windows(denv, 0, 4)  # another flavivirus
    settings = AuditSettings()
    near_same, _ = audit_task(train, same, {}, settings, "zika")
    near_other, _ = audit_task(train, other, {}, settings, "denv")
    assert len(same) > 100 and len(other) > 100
    assert near_same["near_duplicate_fraction"][0] > 0.5
    assert near_other["near_duplicate_fraction"][0] == 0.0
    assert near_other["mean_max_shared"][0] < 0.01


# --------------------------------------------------------------------------- workflow

SHEET = [
    {
        "genome": f"v{i}",
        "label": "virus",
        "group": f"vf{i}",
        "source": f"simulated:virus?length=6000&family={i}&seed={i}",
    }
    for i in range(3)
] + [
    {
        "genome": f"h{i}",
        "label": "host",
        "group": f"hs{i}",
        "source": f"simulated:host?length=9000&family={i}&seed={i}",
    }
    for i in range(3)
]


def _workdir(tmp_path: Path, sheet: list[dict], audit_cfg: dict) -> Path:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["genomes"] = "genomes.tsv"
    config.pop("predict")
    config["audit"] = audit_cfg
    config["tasks"]["virus_vs_host"]["window"] = {"length": 200, "stride": 200}
    config["tasks"]["virus_vs_host"]["balance"] = "none"  # keep every train window of v0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    pd.DataFrame(sheet).fillna("").to_csv(tmp_path / "genomes.tsv", sep="\t", index=False)
    return tmp_path


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return run_snakemake(workdir, *args, configfile=workdir / "config.yaml")


def test_audit_is_planned_for_every_task(tmp_path: Path) -> None:
    workdir = _workdir(tmp_path, SHEET, {"k": 15, "min_shared": 0.5, "max_fraction": 0.2})
    out = _snakemake(workdir, "-n", "results/audit/virus_vs_host.tsv")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    jobs = dict(line.split() for line in text.split("Job stats:")[1].splitlines()[3:9] if line)
    assert jobs["audit"] == "1" and jobs["task_windows"] == "1"
    assert "pretrain" not in jobs  # the audit needs windows only
    bad = _workdir(tmp_path, SHEET, {"k": 40})
    out = _snakemake(bad, "-n")
    assert out.returncode != 0
    assert "40 is greater than the maximum of 31" in out.stdout + out.stderr


@pytest.mark.slow
def test_audit_rule_catches_a_genome_filed_under_two_groups(tmp_path: Path) -> None:
    """The same genome under two groups, pinned to train and test: the split cannot see it,
    the audit does, and with max_fraction it stops the run before writing anything."""
    copy = dict(SHEET[0], genome="v0copy", group="vf_other", split="test")
    sheet = [dict(SHEET[0], split="train"), *SHEET[1:], copy]
    workdir = _workdir(tmp_path, sheet, {"k": 21, "min_shared": 0.5, "max_fraction": None})
    target = "results/audit/virus_vs_host.tsv"
    out = _snakemake(workdir, target)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = pd.read_csv(workdir / target, sep="\t").set_index("label")
    per = pd.read_csv(workdir / "results/audit/virus_vs_host.windows.tsv.gz", sep="\t")
    assert (per.loc[per["genome"] == "v0copy", "max_shared"] == 1.0).all()
    assert (per.loc[per["genome"] == "v0copy", "nearest_genome"] == "v0").all()
    assert summary.loc["virus", "near_duplicate_fraction"] > 0.3

    _workdir(tmp_path, sheet, {"k": 21, "min_shared": 0.5, "max_fraction": 0.05})
    out = _snakemake(workdir, target)
    assert out.returncode != 0
    log = (workdir / "logs/audit/virus_vs_host.log").read_text()
    assert "NearDuplicateError" in log and "audit.max_fraction" in log
    assert not (workdir / target).exists()
