"""The shipped workflow is lint-clean, and bad configs and sheets fail at parse time, clearly."""

from __future__ import annotations

import gzip
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, run_snakemake, write_genome


def run(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_default_config_dry_run():
    out = run("snakemake", "-n", "--cores", "2", "--directory", str(ROOT))
    assert out.returncode == 0, out.stderr[-3000:]


def test_lint_is_clean():
    out = run("snakemake", "--lint", "--cores", "1")
    assert out.returncode == 0 and "Lints for" not in out.stdout + out.stderr, out.stdout[-3000:]


def test_snakefmt_is_clean():
    snakefmt = Path(sys.executable).with_name("snakefmt")
    out = subprocess.run(
        [str(snakefmt), "--check", "Snakefile", "workflow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


SHEET = (
    "genome\tlabel\tgroup\tsource\n"
    + "".join(f"v{i}\tvirus\tvf{i}\tsimulated:virus?length=5000&family={i}\n" for i in range(3))
    + "".join(f"h{i}\thost\thf{i}\tsimulated:host?length=8000&family={i}\n" for i in range(3))
)


DEFAULT_CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
WINDOW = {"length": 64, "stride": 64}


def _drop_line(sheet: str, prefix: str) -> str:
    return "".join(line + "\n" for line in sheet.splitlines() if not line.startswith(prefix))


CASES = {
    "missing sheet column": (
        SHEET.replace("\tgroup", "").replace("\tvf", "\t").replace("\thf", "\t"),
        {},
        "missing column(s) group",
    ),
    "duplicate genome": (SHEET.replace("v1\t", "v0\t"), {}, "duplicate genome name(s) v0"),
    "unknown source type": (
        SHEET.replace("simulated:virus?length=5000&family=2", "s3://x/v.fa"),
        {},
        "unsupported URL scheme 's3'",
    ),
    "bad simulated profile": (
        SHEET.replace("simulated:host?length=8000&family=0", "simulated:plasmid"),
        {},
        "genome 'h0'",
    ),
    "too few groups": (_drop_line(SHEET, "h2"), {}, "label 'host' has 2 group(s)"),
    "unknown model size": (
        SHEET,
        {"models": {"m": {"arch": "hyena", "size": "huge", "tokenizer": "char"}}},
        "unknown size 'huge'",
    ),
    "unknown arch": (
        SHEET,
        {"models": {"m": {"arch": "rnn", "size": "micro", "tokenizer": "char"}}},
        "rnn",
    ),
    "typo in a key": (SHEET, {"pretrian": {"steps": 1}}, "pretrian"),
    "labelled urls without every sha256": (
        SHEET,
        {
            "tasks": {
                "t": {
                    "source": {
                        "format": "csv",
                        "urls": ["https://example.org/a.csv", "https://example.org/b.csv"],
                        "sha256": ["0" * 64],
                    },
                    "labels": ["0", "1"],
                }
            }
        },
        "source with url https://example.org/a.csv: 2 url(s) but 1 sha256 checksum(s)",
    ),
    "window longer than the model": (
        SHEET,
        {"models": {"m": {"arch": "gpt", "size": "micro", "tokenizer": "char", "max_seq_len": 64}}},
        "max_seq_len 64 is shorter than the longest window",
    ),
    "missing tokenizer": (
        SHEET,
        {"models": {"m": {"arch": "gpt", "size": "micro", "tokenizer": "bpe"}}},
        "tokenizer 'bpe'",
    ),
    # simulated lengths are known from the source (host genomes: 8,000 bp): caught before
    # max_seq_len, and before acquiring anything
    "window longer than every genome of a label": (
        SHEET,
        {
            "tasks": {
                "t": {
                    "labels": ["host", "virus"],
                    "window": {"length": 6000, "stride": 6000},
                }
            }
        },
        "task 't': window length 6,000 is longer than every genome labelled 'virus' (the "
        "longest, 'v0', has at most 5,000 bp), so it would get no window; set "
        "tasks.t.window.length to at most 5,000",
    ),
    "pretraining window longer than every genome": (
        SHEET,
        {"pretrain_corpus": {"window": {"length": 9000, "stride": 9000}}},
        "pretrain_corpus: window length 9,000 is longer than every pretraining genome",
    ),
    "sheet label not in the task's labels": (
        SHEET.replace("\tvirus\tvf0", "\tphage\tvf0"),
        {},
        "sheet labels ['phage'] are missing from the task's labels ['host', 'virus']",
    ),
    "task label without a genome": (
        SHEET,
        {"tasks": {"t": {"labels": ["host", "virus", "phage"], "window": WINDOW}}},
        "label(s) ['phage'] of the task's labels have no genome in the sheet",
    ),
    "task genome not in the sheet": (
        SHEET,
        {"tasks": {"t": {"genomes": ["v0", "h0", "zz"], "window": WINDOW}}},
        "task 't' names genome(s) not in the sheet: ['zz']",
    ),
    "missing local genome file": (
        SHEET.replace("simulated:virus?length=5000&family=2", "fasta/v2.fa"),
        {},
        "genomes.tsv, genome 'v2': source file fasta/v2.fa does not exist",
    ),
    "no pretraining genome": (
        "".join(
            line + ("\tpretrain\n" if i == 0 else "\tno\n")
            for i, line in enumerate(SHEET.splitlines())
        ),
        {},
        "no genome feeds pretraining",
    ),
    "header-only sheet": ("genome\tlabel\tgroup\tsource\n", {}, "no genomes, only a header"),
    "negative steps": (
        SHEET,
        {"finetune": {**DEFAULT_CONFIG["finetune"], "steps": -5}},
        "On instance['finetune']['steps']",
    ),
    "predict seed not trained": (
        SHEET,
        {
            "predict": {
                "samples": {"s": "simulated:metagenome"},
                "task": "virus_vs_host",
                "model": "hyena-micro",
                "init": "pretrained",
                "seed": 9,
            }
        },
        "predict.seed 9 is not among finetune.seeds",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_at_parse_time(tmp_path, case):
    sheet, override, message = CASES[case]
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["genomes"] = "genomes.tsv"
    config.pop("predict")
    config.update(override)
    (tmp_path / "genomes.tsv").write_text(sheet)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = run(
        "snakemake",
        "-n",
        "--cores",
        "1",
        "-s",
        str(ROOT / "Snakefile"),
        "-d",
        str(tmp_path),
        "--configfile",
        str(tmp_path / "config.yaml"),
    )
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert message in text, text[-3000:]
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("kind", ["plain", "bgzip", "gzip"])
def test_window_longer_than_local_genomes(tmp_path, kind):
    """A local genome's longest record is bounded by a plain FASTA's size or read from a bgzip
    FASTA's .fai; a gzip FASTA without an index is unknown until acquired, so it passes."""
    rng = random.Random(0)
    sheet = SHEET
    for i, length in enumerate((300, 400, 500)):
        records = [(f"r{i}", "".join(rng.choice("ACGT") for _ in range(length)))]
        if kind == "bgzip":
            path = write_genome(tmp_path, f"v{i}", records)
        else:
            path = tmp_path / f"v{i}.fa{'.gz' if kind == 'gzip' else ''}"
            text = f">{records[0][0]}\n{records[0][1]}\n".encode()
            path.write_bytes(gzip.compress(text) if kind == "gzip" else text)
        sheet = sheet.replace(f"simulated:virus?length=5000&family={i}", path.name)
    config = {**DEFAULT_CONFIG, "genomes": "genomes.tsv"}
    config.pop("predict")
    config["tasks"] = {"t": {"labels": ["host", "virus"], "window": {"length": 800, "stride": 800}}}
    (tmp_path / "genomes.tsv").write_text(sheet)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "config.yaml", timeout=300)
    text = out.stdout + out.stderr
    if kind == "gzip":
        assert out.returncode == 0, text[-3000:]
        return
    bound = 500 if kind == "bgzip" else (tmp_path / "v2.fa").stat().st_size
    assert out.returncode != 0
    message = f"every genome labelled 'virus' (the longest, 'v2', has at most {bound:,} bp)"
    assert message in text, text[-3000:]


def test_real_cpu_config_dry_run_offline():
    """config/real_cpu.yaml names only downloads (NCBI, GitHub URLs with sha256): it plans
    without a network and without ../shared/data; the downloads are jobs."""
    out = run(
        "snakemake",
        "-n",
        "--cores",
        "2",
        "--configfile",
        "config/real_cpu.yaml",
        "-d",
        str(ROOT),
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    real = yaml.safe_load((ROOT / "config/real_cpu.yaml").read_text())
    rows = [r for r in (ROOT / real["genomes"]).read_text().splitlines() if r and r[0] != "#"]
    assert counts["acquire_genome"] == len(rows) - 1 == 9
    assert counts["download_labelled"] == 6 and counts["labelled_windows"] == 2
    assert not any("shared/data" in row for row in rows)  # only comments name it


def test_study_config_dry_run_offline():
    """config/study.yaml plans the whole study without touching the network: downloads are jobs."""
    out = run(
        "snakemake",
        "-n",
        "--cores",
        "8",
        "--configfile",
        "config/study.yaml",
        "-d",
        str(ROOT),
    )
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    counts = {}
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    study = yaml.safe_load((ROOT / "config/study.yaml").read_text())
    runs = len(study["tasks"]) * len(study["models"]) * len(study["finetune"]["seeds"])
    assert counts["finetune"] == counts["scratch"] == runs >= 9 * 4 * 3
    assert counts["genomic_benchmark"] == 8 and counts["labelled_windows"] == 8
    assert counts["pretrain"] == len(study["models"])
    # every genome the study needs is acquired by a job (10 for the virus task, mm10 as reference)
    assert counts["acquire_genome"] == 11
    assert "hyena-micro" not in out.stdout  # the default config is not merged into the study's
