"""The shipped workflow is lint-clean and plans the study offline; a bad config or sheet fails
while Snakemake parses it, with a message saying what to change.

The parse-time checks are the config and sheet schemas and dnalm.config_checks. CASES calls them
in process, as workflow/rules/common.smk does; END_TO_END runs three of them through a real
`snakemake -n`, to show that the messages reach the user before anything is made.
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, dag_jobs, run_snakemake, write_genome
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dnalm.config_checks import ConfigError, check_config, read_genome_sheet

SCHEMAS = ROOT / "workflow" / "schemas"


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


# ---- mistakes caught at parse time ------------------------------------------------------------

SHEET = (
    "genome\tlabel\tgroup\tsource\n"
    + "".join(f"v{i}\tvirus\tvf{i}\tsimulated:virus?length=5000&family={i}\n" for i in range(3))
    + "".join(f"h{i}\thost\thf{i}\tsimulated:host?length=8000&family={i}\n" for i in range(3))
)
DEFAULT_CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
WINDOW = {"length": 64, "stride": 64}
# placeholder files a labelled task may name (the parse-time checks only look for them)
LABELLED_FILES = ("seqs.csv", "exp1.csv", "exp2.csv")


def _drop_line(sheet: str, prefix: str) -> str:
    return "".join(line + "\n" for line in sheet.splitlines() if not line.startswith(prefix))


def schema_error(message: str, where: str) -> tuple[str, str]:
    """A schema mistake: the error's own line and where in the config it is."""
    return (f"ValidationError: {message}", f"On instance{where}:")


# case: (sheet, config override, the whole message: a str for a ConfigError, a pair of whole
# lines for a schema error)
CASES = {
    "missing sheet column": (
        SHEET.replace("\tgroup", "").replace("\tvf", "\t").replace("\thf", "\t"),
        {},
        "genomes.tsv: missing column(s) group; a genome sheet needs genome, label, group, "
        "source (and optionally checksum, pretrain, split)",
    ),
    "duplicate genome": (
        SHEET.replace("v1\t", "v0\t"),
        {},
        "genomes.tsv: duplicate genome name(s) v0; names must be unique",
    ),
    "unknown source type": (
        SHEET.replace("simulated:virus?length=5000&family=2", "s3://x/v.fa"),
        {},
        "genomes.tsv, genome 'v2': source 's3://x/v.fa': unsupported URL scheme 's3'; use "
        "https://, http:// or ftp://, or download the file and give its path",
    ),
    "bad simulated profile": (
        SHEET.replace("simulated:host?length=8000&family=0", "simulated:plasmid"),
        {},
        "genomes.tsv, genome 'h0': 'simulated:plasmid': unknown profile 'plasmid'; allowed "
        "profiles: virus, host",
    ),
    "too few groups": (
        _drop_line(SHEET, "h2"),
        {},
        "task 'virus_vs_host': label 'host' has 2 group(s) (hf0, hf1); splitting by group needs "
        "at least 3 so that val get one; add genomes of other groups with this label or set "
        "their split in the sheet",
    ),
    "unknown model size": (
        SHEET,
        {"models": {"m": {"arch": "hyena", "size": "huge", "tokenizer": "char"}}},
        "model 'm': unknown size 'huge' for arch 'hyena'; choose one of micro, tiny-1k, "
        "small-32k, medium-160k, medium-450k, large-1m",
    ),
    "compression level the library lacks": (
        SHEET,
        {"acquire": {"compress_level": 6}},
        "acquire: compress_level for isal must be an integer 0-3, got 6",
    ),
    "unknown arch": (
        SHEET,
        {"models": {"m": {"arch": "rnn", "size": "micro", "tokenizer": "char"}}},
        schema_error("'rnn' is not one of ['hyena', 'gpt']", "['models']['m']['arch']"),
    ),
    "typo in a key": (
        SHEET,
        {"pretrian": {"steps": 1}},
        schema_error("Additional properties are not allowed ('pretrian' was unexpected)", ""),
    ),
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
        "task 't': source with url https://example.org/a.csv: 2 url(s) but 1 sha256 "
        "checksum(s); pin every file with its sha256 (sha256sum <file>), in url order",
    ),
    "window longer than the model": (
        SHEET,
        {"models": {"m": {"arch": "gpt", "size": "micro", "tokenizer": "char", "max_seq_len": 64}}},
        "model 'm': max_seq_len 64 is shorter than the longest window (512); raise max_seq_len "
        "or shorten the windows",
    ),
    "missing tokenizer": (
        SHEET,
        {"models": {"m": {"arch": "gpt", "size": "micro", "tokenizer": "bpe"}}},
        "model 'm' uses tokenizer 'bpe', which is not under 'tokenizers' (have: char)",
    ),
    "kmer stride longer than k": (
        SHEET,
        {"tokenizers": {"char": {"kind": "char"}, "kmer6": {"kind": "kmer", "k": 4, "stride": 6}}},
        "tokenizers: 'kmer6': kmer stride must be an integer from 1 (overlapping) to k=4 "
        "(non-overlapping), got 6",
    ),
    "bpe without vocab_size": (
        SHEET,
        {"tokenizers": {"char": {"kind": "char"}, "bpe": {"kind": "bpe"}}},
        schema_error("'vocab_size' is a required property", "['tokenizers']['bpe']"),
    ),
    "kmer option on char": (
        SHEET,
        {"tokenizers": {"char": {"kind": "char", "k": 3}}},
        schema_error(
            "Additional properties are not allowed ('k' was unexpected)", "['tokenizers']['char']"
        ),
    ),
    # simulated lengths are known from the source (host genomes: 8,000 bp): caught before
    # max_seq_len, and before acquiring anything
    "window longer than every genome of a label": (
        SHEET,
        {"tasks": {"t": {"labels": ["host", "virus"], "window": {"length": 6000, "stride": 6000}}}},
        "task 't': window length 6,000 is longer than every genome labelled 'virus' (the "
        "longest, 'v0', has at most 5,000 bp), so it would get no window; set "
        "tasks.t.window.length to at most 5,000 or add longer genomes",
    ),
    "pretraining window longer than every genome": (
        SHEET,
        {"pretrain_corpus": {"window": {"length": 9000, "stride": 9000}}},
        "pretrain_corpus: window length 9,000 is longer than every pretraining genome (the "
        "longest, 'h0', has at most 8,000 bp), so it would get no window; set "
        "pretrain_corpus.window.length to at most 8,000 or add longer genomes",
    ),
    "sheet label not in the task's labels": (
        SHEET.replace("\tvirus\tvf0", "\tphage\tvf0"),
        {},
        "task 'virus_vs_host': sheet labels ['phage'] are missing from the task's labels "
        "['host', 'virus']",
    ),
    "task label without a genome": (
        SHEET,
        {"tasks": {"t": {"labels": ["host", "virus", "phage"], "window": WINDOW}}},
        "task 't': label(s) ['phage'] of the task's labels have no genome in the sheet; remove "
        "them from tasks.t.labels or add genomes with them",
    ),
    "task genome not in the sheet": (
        SHEET,
        {"tasks": {"t": {"genomes": ["v0", "h0", "zz"], "window": WINDOW}}},
        "task 't' names genome(s) not in the sheet: ['zz']",
    ),
    "reserved task name": (
        SHEET,
        {"tasks": {"pretrain": {"window": WINDOW}}},
        "'pretrain' is reserved for the pretraining corpus; rename that task",
    ),
    "missing local genome file": (
        SHEET.replace("simulated:virus?length=5000&family=2", "fasta/v2.fa"),
        {},
        "genomes.tsv, genome 'v2': source file fasta/v2.fa does not exist (paths are relative "
        "to the working directory)",
    ),
    "no pretraining genome": (
        "".join(
            line + ("\tpretrain\n" if i == 0 else "\tno\n")
            for i, line in enumerate(SHEET.splitlines())
        ),
        {},
        "genomes.tsv: no genome feeds pretraining (the pretrain column is false everywhere); set "
        "pretrain to true for at least one genome",
    ),
    "header-only sheet": (
        "genome\tlabel\tgroup\tsource\n",
        {},
        "genomes.tsv: no genomes, only a header; add one row per genome",
    ),
    "negative steps": (
        SHEET,
        {"finetune": {**DEFAULT_CONFIG["finetune"], "steps": -5}},
        schema_error("-5 is less than the minimum of 1", "['finetune']['steps']"),
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
        "predict.seed 9 is not among finetune.seeds [0, 1, 2]",
    ),
    "predict sample to download": (
        SHEET,
        {
            "predict": {
                "samples": {"s": "ncbi:NC_045512.2"},
                "task": "virus_vs_host",
                "model": "hyena-micro",
                "seed": 0,
            }
        },
        "predict sample 's': give a local FASTA path or simulated:metagenome, not a ncbi source; "
        "download it first (or add it to the genome sheet and predict on "
        "resources/genomes/<genome>.fa.gz)",
    ),
    # labelled-sequence tasks (the files are LABELLED_FILES)
    "labelled task without labels": (
        SHEET,
        {"tasks": {"nt": {"source": {"format": "csv", "path": "seqs.csv"}}}},
        "task 'nt': a labelled-sequence task needs `labels` (label order = ids; the second is "
        "the positive class), e.g. labels: ['0', '1']",
    ),
    "labelled task file missing": (
        SHEET,
        {
            "tasks": {
                "nt": {"source": {"format": "csv", "path": "nowhere.csv"}, "labels": ["0", "1"]}
            }
        },
        "task 'nt': source file nowhere.csv does not exist (paths are relative to the working "
        "directory)",
    ),
    "unknown ViraMiner experiment": (
        SHEET,
        {
            "tasks": {
                "vm": {
                    "source": {
                        "format": "viraminer",
                        "paths": ["exp1.csv", "exp2.csv"],
                        "test_groups": ["expX"],
                    }
                }
            }
        },
        "task 'vm': test_groups/val_groups ['expX'] are not ViraMiner experiments (file stems: "
        "exp1, exp2)",
    ),
    "test groups without a group column": (
        SHEET,
        {
            "tasks": {
                "nt": {
                    "source": {"format": "csv", "path": "seqs.csv", "test_groups": ["a"]},
                    "labels": ["0", "1"],
                }
            }
        },
        "task 'nt': test_groups/val_groups need groups; set source.group_column",
    ),
    "window on a labelled task": (
        SHEET,
        {"tasks": {"nt": {"source": {"format": "csv", "path": "seqs.csv"}, "window": WINDOW}}},
        schema_error(
            "{'source': {'format': 'csv', 'path': 'seqs.csv'}, 'window': {'length': 64, "
            "'stride': 64, 'max_n_fraction': 0.1}, 'balance': 'none', 'baselines': ['kmer_lr', "
            "'cnn']} is not valid under any of the given schemas",
            "['tasks']['nt']",
        ),
    ),
    "csv option on a fasta source": (
        SHEET,
        {
            "tasks": {
                "nt": {
                    "source": {"format": "fasta", "path": "seqs.csv", "sequence_column": "s"},
                    "labels": ["0", "1"],
                }
            }
        },
        schema_error(
            "{'format': 'fasta', 'path': 'seqs.csv', 'sequence_column': 's'} should not be valid "
            "under {'anyOf': [{'required': ['sequence_column']}, {'required': ['label_column']}, "
            "{'required': ['group_column']}, {'required': ['id_column']}]}",
            "['tasks']['nt']['source']",
        ),
    ),
    # ---- published checkpoints (init_from) and inits
    "published runs without a checkpoint": (
        SHEET,
        {"finetune": DEFAULT_CONFIG["finetune"] | {"inits": ["published", "scratch"]}},
        "finetune.inits has published, but no model has init_from; give a model init_from (a "
        "Hub id such as LongSafari/hyenadna-tiny-1k-seqlen-hf, or a checkpoint directory), or "
        "drop published from finetune.inits",
    ),
    "init_from on a gpt model": (
        SHEET,
        {"models": {"m": {"arch": "gpt", "tokenizer": "char", "init_from": "owner/x-hf"}}},
        "model 'm' (init_from owner/x-hf): init_from loads official HyenaDNA checkpoints, but "
        "arch is 'gpt'; set models.m.arch to hyena",
    ),
    "init_from with a k-mer tokenizer": (
        SHEET,
        {
            "tokenizers": {"k3": {"kind": "kmer", "k": 3}},
            "models": {"m": {"arch": "hyena", "tokenizer": "k3", "init_from": "owner/x-hf"}},
        },
        "model 'm' (init_from owner/x-hf): HyenaDNA checkpoints read one token per base "
        "(HyenaDNA's character ids), but the model's tokenizer is 'kmer'; give "
        "models.m.tokenizer a tokenizer of kind char",
    ),
    "init_from neither a directory nor a Hub id": (
        SHEET,
        {"models": {"m": {"arch": "hyena", "tokenizer": "char", "init_from": "./ckpts/tiny"}}},
        "init_from './ckpts/tiny' is neither an existing directory nor a Hugging Face Hub id "
        "(owner/name, e.g. LongSafari/hyenadna-tiny-1k-seqlen-hf); fix the path or the id",
    ),
    "local checkpoint of another size": (
        SHEET,
        {
            "models": {
                "m": {
                    "arch": "hyena",
                    "size": "small-32k",
                    "tokenizer": "char",
                    "init_from": "ckpt",
                }
            }
        },
        "model 'm' (init_from ckpt): size 'small-32k' (d_model 256, n_layer 4, d_inner 1024, "
        "max_seq_len 32768) contradicts the checkpoint (d_model 128, n_layer 2, d_inner 512, "
        "max_seq_len 1026 (size tiny-1k)); the checkpoint decides the model: set models.m.size "
        "to tiny-1k",
    ),
    "local checkpoint shorter than max_seq_len": (
        SHEET,
        {
            "models": {
                "m": {
                    "arch": "hyena",
                    "tokenizer": "char",
                    "init_from": "ckpt",
                    "max_seq_len": 2048,
                }
            }
        },
        "model 'm' (init_from ckpt): max_seq_len 2048 is longer than the checkpoint's context "
        "(1026); set models.m.max_seq_len to at most 1026 (and windows no longer)",
    ),
    "revision without init_from": (
        SHEET,
        {
            "models": {
                "m": {"arch": "hyena", "size": "micro", "tokenizer": "char", "revision": "v1"}
            }
        },
        "model 'm': revision is a revision of init_from; give init_from too, or drop revision",
    ),
    "revision of a local checkpoint": (
        SHEET,
        {
            "models": {
                "m": {"arch": "hyena", "tokenizer": "char", "init_from": "ckpt", "revision": "v1"}
            }
        },
        "model 'm' (init_from ckpt): revision applies to a Hub id; a local directory is used as "
        "it is",
    ),
    "neither size nor init_from": (
        SHEET,
        {"models": {"m": {"arch": "hyena", "tokenizer": "char"}}},
        schema_error(
            "{'arch': 'hyena', 'tokenizer': 'char', 'max_seq_len': 1024, 'compile': False} is "
            "not valid under any of the given schemas",
            "['models']['m']",
        ),
    ),
    "predict a published run that does not exist": (
        SHEET,
        {
            "predict": {
                "samples": {"s": "simulated:metagenome?seed=1&contigs=2"},
                "task": "virus_vs_host",
                "model": "hyena-micro",
                "init": "published",
                "seed": 0,
            }
        },
        "predict.init 'published': model 'hyena-micro' has no such run (its inits: pretrained, "
        "scratch); choose one of them or give the model init_from",
    ),
    "a Hub dataset that is not a repository id": (
        SHEET,
        {"tasks": {"nt": {"source": {"format": "hf_dataset", "repo": "gb"}, "labels": ["0", "1"]}}},
        "task 'nt': source repo 'gb' is not a Hugging Face Hub dataset id (owner/name), e.g. "
        "katarinagresova/Genomic_Benchmarks_human_nontata_promoters",
    ),
}
# a local checkpoint in the cases' working directory: config.json in the shape of the released
# tiny-1k (read at parse time), and a weights file (only its presence is checked then)
CHECKPOINT_CONFIG = {
    "model_type": "hyenadna",
    "d_model": 128,
    "n_layer": 2,
    "d_inner": 512,
    "max_seq_len": 1026,
    "vocab_size": 12,
}
# a sheet mistake, a cross-field config mistake and a schema mistake
END_TO_END = ["duplicate genome", "window longer than every genome of a label", "typo in a key"]


def case_config(override: dict) -> dict:
    config = copy.deepcopy(DEFAULT_CONFIG)
    config["genomes"] = "genomes.tsv"
    config.pop("predict")
    config.update(copy.deepcopy(override))
    return config


def write_case(workdir: Path, sheet: str, config: dict) -> None:
    (workdir / "genomes.tsv").write_text(sheet)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    for name in LABELLED_FILES:
        (workdir / name).write_text("seq,label\n")
    (workdir / "ckpt").mkdir(exist_ok=True)
    (workdir / "ckpt" / "config.json").write_text(json.dumps(CHECKPOINT_CONFIG))
    (workdir / "ckpt" / "model.safetensors").write_bytes(b"")


def parse(workdir: Path, sheet: str, config: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """What common.smk does while Snakemake parses, in process: the config schema (filling in its
    defaults), the sheet, then the cross-field checks. Paths are relative to `workdir`."""
    write_case(workdir, sheet, config)
    monkeypatch.chdir(workdir)
    validate(config, str(SCHEMAS / "config.schema.yaml"))
    genomes = read_genome_sheet(
        config["genomes"], lambda rows: validate(rows, str(SCHEMAS / "genomes.schema.yaml"))
    )
    check_config(config, genomes)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_at_parse_time(tmp_path, monkeypatch, case):
    sheet, override, message = CASES[case]
    if isinstance(message, str):
        with pytest.raises(ConfigError) as err:
            parse(tmp_path, sheet, case_config(override), monkeypatch)
        assert str(err.value) == message
    else:
        with pytest.raises(WorkflowError) as err:
            parse(tmp_path, sheet, case_config(override), monkeypatch)
        lines = str(err.value).splitlines()
        assert lines[0] == "Error validating config file." and lines[1] == message[0]
        assert message[1] in lines


def test_good_config_passes(tmp_path, monkeypatch):
    """The cases' starting point is sound: each case's error is its own change."""
    parse(tmp_path, SHEET, case_config({}), monkeypatch)


def test_published_checkpoints_pass_at_parse_time(tmp_path, monkeypatch):
    """A Hub id is not looked up while parsing (its fetch job checks it); a local checkpoint of
    the entry's size, or of no stated size, passes; published runs need no pretraining window."""
    models = {
        "hub": {"arch": "hyena", "tokenizer": "char", "init_from": "LongSafari/x-hf"},
        "local": {"arch": "hyena", "size": "tiny-1k", "tokenizer": "char", "init_from": "ckpt"},
        "plain": {"arch": "hyena", "tokenizer": "char", "init_from": "ckpt", "max_seq_len": 512},
    }
    finetune = DEFAULT_CONFIG["finetune"] | {"inits": ["published", "scratch"]}
    corpus = {"window": {"length": 4096, "stride": 4096}}  # too long, but nothing is pretrained
    parse(
        tmp_path,
        SHEET,
        case_config({"models": models, "finetune": finetune, "pretrain_corpus": corpus}),
        monkeypatch,
    )


def test_sheet_defaults_come_from_the_schema(tmp_path, monkeypatch):
    """Optional sheet columns, absent or empty, take the sheet schema's defaults."""
    sheet = SHEET.replace("source\n", "source\tpretrain\tsplit\n", 1)
    sheet = sheet.replace("family=0\n", "family=0\tNO\ttest\n").replace(
        "family=1\n", "family=1\t\t\n"
    )
    write_case(tmp_path, sheet, case_config({}))
    monkeypatch.chdir(tmp_path)
    rows = read_genome_sheet(
        "genomes.tsv", lambda rows: validate(rows, str(SCHEMAS / "genomes.schema.yaml"))
    )
    assert list(rows.index) == ["v0", "v1", "v2", "h0", "h1", "h2"]
    assert rows["pretrain"].tolist() == [False, True, True, False, True, True]
    assert rows["split"].tolist() == ["test", "", "", "test", "", ""]
    assert rows["checksum"].tolist() == [""] * 6
    assert set(rows["kind"]) == {"simulated"}


@pytest.mark.parametrize("case", END_TO_END)
def test_mistakes_reach_the_user(tmp_path, case):
    """Snakemake reports the message while parsing, before any job: `snakemake -n` shows it."""
    sheet, override, message = CASES[case]
    write_case(tmp_path, sheet, case_config(override))
    out = run_snakemake(tmp_path, "-n", configfile=tmp_path / "config.yaml", timeout=300)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    for line in [message] if isinstance(message, str) else message:
        assert line in text, text[-3000:]
    assert not (tmp_path / "resources").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("kind", ["plain", "bgzip", "gzip"])
def test_window_longer_than_local_genomes(tmp_path, monkeypatch, kind):
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
    window = {"length": 800, "stride": 800}
    config = case_config({"tasks": {"t": {"labels": ["host", "virus"], "window": window}}})
    if kind == "gzip":
        parse(tmp_path, sheet, config, monkeypatch)
        return
    bound = 500 if kind == "bgzip" else (tmp_path / "v2.fa").stat().st_size
    with pytest.raises(ConfigError) as err:
        parse(tmp_path, sheet, config, monkeypatch)
    assert str(err.value) == (
        f"task 't': window length 800 is longer than every genome labelled 'virus' (the longest, "
        f"'v2', has at most {bound:,} bp), so it would get no window; set tasks.t.window.length "
        f"to at most {bound:,} or add longer genomes"
    )


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


def test_hyenadna_gb_config_plans_without_the_hub(tmp_path):
    """config/hyenadna_gb.yaml plans offline: the five checkpoints are fetch jobs, so a dry
    run asks the Hub nothing (HF_ENDPOINT points at a loopback Hub that logs every request).
    Its plan, job by job: 8 tasks x 5 checkpoints x (published, scratch) x 5 seeds, nothing
    pretrained, 2 reference genomes, and each dataset's windows, audit, shards and baselines."""
    from hub_server import HubServer

    gb = yaml.safe_load((ROOT / "config/hyenadna_gb.yaml").read_text())
    with HubServer() as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")}
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(ROOT)]
            + ["--configfile", str(ROOT / "config/hyenadna_gb.yaml"), "--dag", "--cores", "1"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert hub.requests == []
    assert not (tmp_path / "hf").exists()
    jobs, edges = dag_jobs(out.stdout)
    tasks, models, seeds = len(gb["tasks"]), len(gb["models"]), len(gb["finetune"]["seeds"])
    assert (tasks, models, seeds) == (8, 5, 5) and gb["finetune"]["inits"] == [
        "published",
        "scratch",
    ]
    assert Counter(jobs.values()) == {
        "acquire_genome": 2,  # hg38 and mm10, the references of 6 datasets
        "genomic_benchmark": 8,
        "labelled_windows": 8,
        "audit": 8,
        "build_tokenizer": 1,
        "tokenize": 8 * 3,
        "fetch_checkpoint": 5,
        "finetune": 8 * 5 * 2 * 5,
        "baseline": 8 * 2 * 5,  # kmer_lr and cnn, per seed
        "aggregate": 1,
        "provenance": 1,
        "all": 1,
    }
    fetched = {b for a, b in edges if jobs[a] == "fetch_checkpoint" and jobs[b] == "finetune"}
    assert len(fetched) == 400  # every run, published or scratch, has its checkpoint's shape
    sizes = {spec["size"] for spec in gb["models"].values()}
    assert sizes == {"tiny-1k", "small-32k", "medium-160k", "medium-450k", "large-1m"}
    for name, spec in gb["models"].items():
        assert spec["init_from"] == f"LongSafari/hyenadna-{spec['size']}-seqlen-hf", name


def test_config_checks_is_imported_by_the_workflow_only():
    """The checks are the workflow's: no library module may depend on them."""
    library = ROOT / "src" / "dnalm"
    users = [
        p.relative_to(ROOT)
        for p in library.rglob("*.py")
        if p.name != "config_checks.py" and "config_checks" in p.read_text()
    ]
    assert users == []
    assert "config_checks" in (ROOT / "workflow/rules/common.smk").read_text()


def test_extra_sheet_columns_keep_empty_cells_empty(tmp_path, monkeypatch):
    """A column of the user's own (notes, say) reads an empty cell as '', as the others do."""
    sheet = SHEET.replace("source\n", "source\tnote\n", 1).replace("family=0\n", "family=0\tx\n")
    write_case(tmp_path, sheet, case_config({}))
    monkeypatch.chdir(tmp_path)
    rows = read_genome_sheet(
        "genomes.tsv", lambda rows: validate(rows, str(SCHEMAS / "genomes.schema.yaml"))
    )
    assert rows["note"].tolist() == ["x", "", "", "x", "", ""]
    assert not rows.isna().any().any()
