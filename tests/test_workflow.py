"""The shipped workflow is lint-clean, and bad configs and sheets fail at parse time, clearly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT


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
