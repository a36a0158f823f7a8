"""A real `snakemake` run that builds a kmer and a bpe tokenizer and the pretraining shards."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import yaml
from conftest import ROOT, run_snakemake

from dnalm.corpus import window_sequences
from dnalm.shards import TokenShard
from dnalm.tokenization import load_tokenizer

TOKENIZERS = {
    "kmer6": {"kind": "kmer", "k": 6, "stride": 1},
    "bpe": {"kind": "bpe", "vocab_size": 200, "max_training_bases": 20_000},
}
WINDOW = 256


def tiny_config() -> dict:
    """The shipped default with 6 small genomes, a short corpus and the two tokenizers."""
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config.pop("predict")
    config["genomes"] = "genomes.tsv"
    task = config["tasks"]["virus_vs_host"]
    task.update(window={"length": 128, "stride": 128}, max_windows_per_genome=20)
    config["pretrain_corpus"]["window"] = {"length": WINDOW, "stride": WINDOW}
    config["tokenizers"] = json.loads(json.dumps(TOKENIZERS))
    config["models"] = {
        "hyena-kmer": {"arch": "hyena", "size": "micro", "tokenizer": "kmer6"},
        "gpt-bpe": {"arch": "gpt", "size": "micro", "tokenizer": "bpe"},
    }
    return config


def sheet() -> str:
    rows = [
        f"v{i}\tvirus\tvf{i}\tsimulated:virus?length=12000&family={i}&seed={i}" for i in range(3)
    ] + [f"h{i}\thost\thf{i}\tsimulated:host?length=20000&family={i}&seed={i}" for i in range(3)]
    return "genome\tlabel\tgroup\tsource\n" + "\n".join(rows) + "\n"


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (workdir / "genomes.tsv").write_text(sheet())
    return run_snakemake(workdir, *args, configfile=workdir / "config.yaml", cores=2)


def test_kmer_and_bpe_tokenizers_and_shards(tmp_path):
    config = tiny_config()
    targets = [f"results/tokens/{tok}/pretrain/train.bin" for tok in TOKENIZERS]
    out = snakemake(tmp_path, config, *targets)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]

    windows = pd.read_parquet(tmp_path / "results/windows/pretrain/train.parquet")
    assert len(windows) > 50 and (windows["end"] - windows["start"] == WINDOW).all()
    paths = {g: tmp_path / f"resources/genomes/{g}.fa.gz" for g in windows["genome"].unique()}
    sequences = list(window_sequences(windows, paths))
    for name, spec in TOKENIZERS.items():
        directory = tmp_path / f"results/tokenizers/{name}"
        saved = json.loads((directory / "tokenizer_config.json").read_text())
        assert saved["dnalm_tokenizer"]["kind"] == spec["kind"]
        tokenizer = load_tokenizer(directory)
        shard = TokenShard.open(tmp_path / f"results/tokens/{name}/pretrain/train")
        meta = json.loads(
            (directory.parent.parent / f"tokens/{name}/pretrain/train.meta.json").read_text()
        )
        assert len(shard) == len(windows) and meta["vocab_size"] == len(tokenizer)
        assert meta["window_length"] == WINDOW  # in bases, whatever the tokenizer
        # the shard holds exactly what the saved tokenizer gives each window
        for i in (0, len(shard) // 2, len(shard) - 1):
            expected = tokenizer(sequences[i].decode(), add_special_tokens=False)["input_ids"]
            assert shard[i].tolist() == expected, (name, i)
        if spec["kind"] == "kmer":
            assert len(tokenizer) == 7 + 4**6
            assert (shard.lengths == WINDOW - 6 + 1).all()
        else:
            assert len(tokenizer) == spec["vocab_size"]
            assert shard.lengths.mean() < 0.7 * WINDOW  # fewer tokens than bases
        assert shard.lengths.max() <= WINDOW  # max_seq_len >= window length stays a bound
    log = (tmp_path / "logs/build_tokenizer/bpe.log").read_text()
    assert "training bpe (vocab_size 200)" in log
    # bpe learned from a capped, seeded sample of the train windows
    used = int(log.split("train windows (")[1].split(" bases")[0])
    assert 0 < used <= TOKENIZERS["bpe"]["max_training_bases"] < len(windows) * WINDOW

    # the tokenizer spec is a parameter of its rule: changing bpe rebuilds bpe, not kmer6
    config["tokenizers"]["bpe"]["vocab_size"] = 150
    plan = snakemake(tmp_path, config, "-n", *targets)
    assert plan.returncode == 0, plan.stderr[-3000:]
    stats = (plan.stdout + plan.stderr).split("Job stats:", 1)[1].split("\n\n", 1)[0]
    assert "build_tokenizer        1" in stats and "tokenize               1" in stats, stats
    assert "pretrain_windows" not in stats
