"""Checkpoints and datasets from the Hub: fetched, checked, recorded; refused when they are wrong.

No test touches the internet: `hub_server.HubServer` answers the Hub's file API on 127.0.0.1 and
`HF_ENDPOINT` points huggingface_hub at it. huggingface_hub reads `HF_ENDPOINT`, `HF_HOME` and
`HF_HUB_OFFLINE` when it is imported, so each fetch runs in a fresh process with those set, as
the pipeline's fetch jobs do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from hub_server import HubServer
from test_checkpoints import (
    assert_matches_reference,
    hf_config,
    random_official_state,
    write_hf,
    write_original,
)

from dnalm.hub import (
    HubError,
    fetch_checkpoint,
    git_blob_sha1,
    is_hub_id,
    parse_init_from,
    sha256_file,
)
from dnalm.hyenadna_config import (
    CONFIG_DEFAULTS,
    CheckpointError,
    check_entry,
    check_vocabulary,
    checkpoint_shape,
    size_of,
)
from dnalm.labelled import hub_dataset_dir, hub_datasets, read_hf_dataset, read_source
from dnalm.models import HyenaConfig, load_hyenadna

ROOT = Path(__file__).resolve().parents[1]
REPO = "owner/hyenadna-test-hf"
ORIGINAL = "owner/hyenadna-test"
TOKENIZER_CONFIG = {
    "added_tokens_decoder": {
        str(i): {"content": t, "special": True}
        for i, t in enumerate(["[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]"])
    },
    "characters": ["A", "C", "G", "T", "N"],
    "model_max_length": 38,
    "pad_token": "[PAD]",
    "tokenizer_class": "CharacterTokenizer",
    "auto_map": {"AutoTokenizer": ["tokenization_hyena.CharacterTokenizer", None]},
}


def files_of(directory: Path) -> dict[str, bytes]:
    return {
        p.relative_to(directory).as_posix(): p.read_bytes()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def publish(hub: HubServer, tmp_path: Path, repo: str = REPO, layout: str = "hf", seed: int = 0):
    """A random HyenaDNA checkpoint in an official layout, committed to `repo` on the server
    (with the remote code and tokenizer files the real repositories carry)."""
    state = random_official_state(seed=seed)
    directory = tmp_path / f"{layout}-{seed}"
    if layout == "hf":
        write_hf(directory, state)
        (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    else:
        write_original(directory, state, checkpoint_mixer=True)
    (directory / "modeling_hyena.py").write_text("raise SystemExit('remote code ran')\n")
    (directory / "README.md").write_text("# a HyenaDNA checkpoint\n")
    commit = hub.add(repo, files_of(directory))
    return directory, state, commit


def hub_env(hub: HubServer, home: Path, offline: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "PYTHONPATH": str(ROOT / "src")}
    env["HF_HUB_DISABLE_TELEMETRY"] = "1"
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return env


def run_fetch(env: dict, call: str, cwd: Path) -> subprocess.CompletedProcess:
    """`call` (an expression of dnalm.hub's functions) in a fresh process run in `cwd`; its
    JSON result on stdout, its error on stderr."""
    code = (
        "import json, sys\nfrom dnalm.hub import *\n"
        f"try:\n    print(json.dumps({call}))\n"
        "except HubError as err:\n    print(err, file=sys.stderr); sys.exit(3)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )


# --- hashes and names ------------------------------------------------------------------------


def test_git_blob_sha1_is_gits_object_id(tmp_path):
    data = b'{"d_model": 128}\n' * 3
    (tmp_path / "config.json").write_bytes(data)
    expected = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert git_blob_sha1(tmp_path / "config.json") == expected
    if shutil.which("git"):
        out = subprocess.run(
            ["git", "hash-object", str(tmp_path / "config.json")], capture_output=True, text=True
        )
        assert out.stdout.strip() == expected
    assert sha256_file(tmp_path / "config.json") == hashlib.sha256(data).hexdigest()


def test_init_from_is_a_directory_or_a_hub_id(tmp_path, monkeypatch):
    assert is_hub_id("LongSafari/hyenadna-tiny-1k-seqlen-hf")
    for bad in ("hyenadna", "a/b/c", "/abs/path", "./rel/x", "../x", "a/..", "https://hf.co/a/b"):
        assert not is_hub_id(bad), bad
    assert parse_init_from("LongSafari/hyenadna-small-32k-seqlen-hf")[0] == "hub"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "owner" / "name").mkdir(parents=True)
    assert parse_init_from("owner/name") == ("local", "owner/name")  # a directory wins
    with pytest.raises(HubError, match="neither an existing directory nor a Hugging Face Hub id"):
        parse_init_from("./checkpoints/missing")


# --- does a checkpoint fit a model entry -----------------------------------------------------


def test_config_defaults_are_hyenaconfigs():
    config = HyenaConfig()
    assert {k: getattr(config, k) for k in CONFIG_DEFAULTS} == CONFIG_DEFAULTS


def test_published_shapes_are_named_sizes():
    def shape(d_model, n_layer, max_seq_len):
        return checkpoint_shape(
            {"d_model": d_model, "n_layer": n_layer, "max_seq_len": max_seq_len}
        )

    assert size_of(shape(128, 2, 1026)) == "tiny-1k"  # l_max = context + 2, as released
    assert size_of(shape(256, 4, 32770)) == "small-32k"
    assert size_of(shape(256, 8, 160002)) == "medium-160k"
    assert size_of(shape(256, 8, 450002)) == "medium-450k"
    assert size_of(shape(256, 8, 1_000_002)) == "large-1m"
    assert size_of(shape(128, 2, 16386)) is None  # tiny-16k-d128: no named size
    assert size_of(shape(32, 2, 38)) is None


def test_a_checkpoint_decides_the_model(tmp_path):
    directory = write_hf(tmp_path / "ck", random_official_state())
    spec = {"name": "hy", "arch": "hyena", "init_from": "owner/x", "max_seq_len": 32}
    shape = check_entry(directory, spec, {"kind": "char"})
    assert (shape["d_model"], shape["n_layer"], shape["max_seq_len"]) == (32, 2, 38)
    assert shape["layout"] == "hf" and shape["size"] is None
    cases = [
        (
            {"size": "small-32k"},
            "size 'small-32k' .* contradicts the checkpoint .*remove models.hy.size",
        ),
        (
            {"max_seq_len": 1024},
            r"max_seq_len 1024 is longer than the checkpoint's context \(38\); "
            r"set models.hy.max_seq_len to at most 38",
        ),
        ({"arch": "gpt"}, "arch is 'gpt'; set models.hy.arch to hyena"),
    ]
    for change, message in cases:
        with pytest.raises(CheckpointError, match=message):
            check_entry(directory, spec | change, {"kind": "char"})
    with pytest.raises(
        CheckpointError,
        match="tokenizer is 'kmer'; give models.hy.tokenizer a tokenizer of kind char",
    ):
        check_entry(directory, spec, {"kind": "kmer", "k": 3})
    # a checkpoint of a named size is that size and no other
    tiny = hf_config() | {"d_model": 128, "d_inner": 512, "max_seq_len": 1026}
    (directory / "config.json").write_text(json.dumps(tiny))
    assert check_entry(directory, spec | {"size": "tiny-1k"}, {"kind": "char"})["size"] == "tiny-1k"
    with pytest.raises(CheckpointError, match="set models.hy.size to tiny-1k"):
        check_entry(directory, spec | {"size": "small-32k"}, {"kind": "char"})


def test_the_checkpoints_vocabulary_must_be_the_char_tokenizers(tmp_path):
    directory = write_hf(tmp_path / "ck", random_official_state())
    (directory / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    check_vocabulary(directory)
    cases = [
        ("config.json", hf_config() | {"vocab_size": 16}, "config.json has vocab_size 16"),
        ("config.json", hf_config() | {"pad_token_id": 0}, "config.json has pad_token_id 0"),
        (
            "tokenizer_config.json",
            TOKENIZER_CONFIG | {"characters": ["A", "C", "G", "T"]},
            r"characters \['A', 'C', 'G', 'T'\]",
        ),
        (
            "tokenizer_config.json",
            TOKENIZER_CONFIG | {"added_tokens_decoder": {"0": {"content": "[PAD]"}}},
            "gives '\\[PAD\\]' id 0, the char tokenizer 4",
        ),
        (
            "tokenizer.json",
            {"model": {"vocab": {"[PAD]": 0, "A": 1}}},
            "tokenizer.json has 2 tokens",
        ),
    ]
    for name, content, message in cases:
        saved = (directory / name).read_text() if (directory / name).exists() else None
        (directory / name).write_text(json.dumps(content))
        with pytest.raises(CheckpointError, match=message):
            check_vocabulary(directory)
        if saved is None:
            (directory / name).unlink()
        else:
            (directory / name).write_text(saved)


# --- fetching through the loopback Hub -------------------------------------------------------


@pytest.fixture
def hub():
    with HubServer() as server:
        yield server


@pytest.mark.parametrize("layout", ["hf", "original"])
def test_fetch_checks_copies_and_records_the_commit(hub, tmp_path, layout):
    source, state, commit = publish(hub, tmp_path, layout=layout)
    env = hub_env(hub, tmp_path / "hf")
    out = run_fetch(env, f"fetch_checkpoint({REPO!r}, {str(tmp_path / 'dest')!r})", tmp_path)
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    dest = tmp_path / "dest"
    assert record["commit"] == commit and record["revision"] == "main"
    assert record["layout"] == layout and record["endpoint"] == hub.url
    assert json.loads((dest / "source.json").read_text()) == record
    # every file but the remote code, byte for byte; each with the hash the Hub reports
    wanted = {n for n in files_of(source) if not n.endswith(".py")}
    assert set(files_of(dest)) == wanted | {"source.json"}
    for name in wanted:
        assert (dest / name).read_bytes() == (source / name).read_bytes()
    weights = "model.safetensors" if layout == "hf" else "weights.ckpt"
    assert record["files"][weights]["sha256"] == sha256_file(source / weights)  # LFS
    assert record["files"]["config.json"]["git_blob_sha1"] == git_blob_sha1(source / "config.json")
    assert_matches_reference(load_hyenadna(dest), state)


def test_a_tampered_file_fails_its_checksum_and_leaves_nothing(hub, tmp_path):
    publish(hub, tmp_path)
    hub.tamper(REPO, "model.safetensors")
    home, dest = tmp_path / "hf", tmp_path / "dest"
    out = run_fetch(hub_env(hub, home), f"fetch_checkpoint({REPO!r}, {str(dest)!r})", tmp_path)
    assert out.returncode == 3
    assert "model.safetensors: does not match what the Hub reports" in out.stderr
    assert "sha256" in out.stderr and "the cached copy was deleted" in out.stderr
    assert not dest.exists() and not list(tmp_path.glob(".dest.*"))
    bad = hashlib.sha256(next(iter(hub.repos[("model", REPO)].tampered.values()))).hexdigest()
    cached = [p for p in home.rglob("*") if p.is_file() and not p.is_symlink()]
    assert not any(sha256_file(p) == bad for p in cached), "the bad bytes stayed in the cache"
    # offline mode cannot pick the bad file up either; online, fixed, it fetches
    out = run_fetch(
        hub_env(hub, home, offline=True), f"fetch_checkpoint({REPO!r}, {str(dest)!r})", tmp_path
    )
    assert out.returncode == 3 and not dest.exists()
    hub.untamper()
    out = run_fetch(hub_env(hub, home), f"fetch_checkpoint({REPO!r}, {str(dest)!r})", tmp_path)
    assert out.returncode == 0, out.stderr


def test_a_tampered_small_file_fails_its_git_blob_id(hub, tmp_path):
    publish(hub, tmp_path)
    hub.tamper(REPO, "config.json")
    out = run_fetch(hub_env(hub, tmp_path / "hf"), f"fetch_checkpoint({REPO!r}, 'dest')", tmp_path)
    assert out.returncode == 3 and "config.json" in out.stderr and "git blob SHA-1" in out.stderr


def test_offline_mode_works_from_the_cache(hub, tmp_path):
    _, state, commit = publish(hub, tmp_path)
    home = tmp_path / "hf"
    assert (
        run_fetch(hub_env(hub, home), f"fetch_checkpoint({REPO!r}, 'x')", tmp_path).returncode == 0
    )
    asked = len(hub.requests)
    dest = tmp_path / "offline"
    out = run_fetch(
        hub_env(hub, home, offline=True), f"fetch_checkpoint({REPO!r}, {str(dest)!r})", tmp_path
    )
    assert out.returncode == 0, out.stderr
    record = json.loads(out.stdout)
    assert record["offline"] and record["commit"] == commit
    assert len(hub.requests) == asked, "offline mode asked the Hub"
    assert_matches_reference(load_hyenadna(dest), state)
    # a cached file changed on disk is caught offline too (it no longer matches its name)
    blob = next(p for p in (home / "hub").rglob("blobs/*") if p.stat().st_size > 1000)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    out = run_fetch(
        hub_env(hub, home, offline=True), f"fetch_checkpoint({REPO!r}, 'again')", tmp_path
    )
    assert out.returncode == 3 and "does not match" in out.stderr
    # what was never fetched cannot be fetched offline
    out = run_fetch(
        hub_env(hub, home, offline=True), "fetch_checkpoint('owner/other', 'y')", tmp_path
    )
    assert out.returncode == 3
    assert (
        "not (completely) in the Hub cache" in out.stderr and "HF_HUB_OFFLINE is set" in out.stderr
    )


def test_unknown_ids_and_revisions_fail_clearly(hub, tmp_path):
    _, _, first = publish(hub, tmp_path)
    env = hub_env(hub, tmp_path / "hf")
    out = run_fetch(env, "fetch_checkpoint('owner/no-such-model', 'x')", tmp_path)
    assert out.returncode == 3
    assert "model 'owner/no-such-model' was not found on the Hub" in out.stderr
    assert "check the id" in out.stderr
    out = run_fetch(env, f"fetch_checkpoint({REPO!r}, 'x', revision='v9')", tmp_path)
    assert out.returncode == 3 and "has no revision 'v9'" in out.stderr
    # a pinned commit stays what it was when main moves on
    publish(hub, tmp_path, seed=5)
    out = run_fetch(env, f"fetch_checkpoint({REPO!r}, 'pinned', revision={first!r})", tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["commit"] == first
    assert not (tmp_path / "x").exists()


def test_a_local_directory_is_copied_and_checked(tmp_path):
    source = write_original(tmp_path / "orig", random_official_state(), checkpoint_mixer=False)
    record = fetch_checkpoint(str(source), tmp_path / "dest")
    assert record["source"] == "local" and record["layout"] == "original"
    assert record["files"]["weights.ckpt"]["sha256"] == sha256_file(source / "weights.ckpt")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text(json.dumps(hf_config()))
    with pytest.raises(
        HubError, match="not an official HyenaDNA checkpoint: .*no model.safetensors"
    ):
        fetch_checkpoint(str(tmp_path / "empty"), tmp_path / "dest2")
    assert not (tmp_path / "dest2").exists()


# --- Hub datasets ----------------------------------------------------------------------------


def parquet_bytes(tmp_path: Path, name: str, frame: pd.DataFrame) -> bytes:
    path = tmp_path / name
    frame.to_parquet(path, index=False)
    return path.read_bytes()


def test_a_hub_dataset_keeps_its_split(hub, tmp_path, monkeypatch):
    train = pd.DataFrame(
        {"seq": ["ACGT" * 8, "GGGC" * 8, "ATAT" * 8, "CCCG" * 8], "label": [0, 1, 0, 1]}
    )
    test = pd.DataFrame({"seq": ["ACGA" * 8, "GCGC" * 8], "label": [0, 1]})
    commit = hub.add(
        "owner/gb",
        {
            "data/train-00000-of-00001.parquet": parquet_bytes(tmp_path, "a.parquet", train),
            "data/test-00000-of-00001.parquet": parquet_bytes(tmp_path, "b.parquet", test),
            "README.md": b"# a dataset\n",
        },
        repo_type="dataset",
    )
    source = {"format": "hf_dataset", "repo": "owner/gb"}
    dest = hub_dataset_dir(source)
    assert dest == "resources/hub_datasets/owner--gb"
    assert hub_dataset_dir(source | {"revision": "refs/convert/parquet"}).endswith(
        "owner--gb@refs%2Fconvert%2Fparquet"
    )
    out = run_fetch(hub_env(hub, tmp_path / "hf"), f"fetch_dataset('owner/gb', {dest!r})", tmp_path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["commit"] == commit
    monkeypatch.chdir(tmp_path)  # the pipeline's working directory
    table = read_source(source)
    assert table.groupby("split").size().to_dict() == {"test": 2, "train": 4}
    assert set(table["label"]) == {"0", "1"} and table["id"].iloc[0] == "test:0"
    with pytest.raises(ValueError, match="'owner' is not a Hugging Face Hub dataset id"):
        read_source({"format": "hf_dataset", "repo": "owner"})
    with pytest.raises(
        ValueError,
        match=r"no column 'sequence' \(the file has: seq, label\); set source.sequence_column",
    ):
        read_hf_dataset(dest, sequence_column="sequence")


def test_tasks_naming_one_dataset_share_its_fetch():
    tasks = {
        "a": {"source": {"format": "hf_dataset", "repo": "o/d", "splits": {"train": "t/*"}}},
        "b": {"source": {"format": "hf_dataset", "repo": "o/d", "splits": {"test": "x/*"}}},
        "c": {"source": {"format": "hf_dataset", "repo": "o/d", "revision": "v1"}},
        "d": {"source": {"format": "csv", "path": "x.csv"}},
    }
    assert hub_datasets(tasks) == {
        "resources/hub_datasets/o--d": {
            "repo": "o/d",
            "revision": None,
            "patterns": ["t/*", "x/*"],
        },
        "resources/hub_datasets/o--d@v1": {"repo": "o/d", "revision": "v1", "patterns": None},
    }


def test_hub_dataset_splits_from_names_patterns_and_class_labels(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ds"
    (root / "default" / "validation").mkdir(parents=True)
    schema = pa.schema([("sequence", pa.string()), ("y", pa.int64())]).with_metadata(
        {
            b"huggingface": json.dumps(
                {"info": {"features": {"y": {"_type": "ClassLabel", "names": ["neg", "pos"]}}}}
            ).encode()
        }
    )
    for split in ("train", "validation", "test"):
        table = pa.table({"sequence": ["ACGT", "TTGA"], "y": [0, 1]}, schema=schema)
        target = root / "default" / split / "0000.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, target)
    read = read_hf_dataset(root, sequence_column="sequence", label_column="y")
    assert read.groupby("split").size().to_dict() == {"test": 2, "train": 2, "val": 2}
    assert list(read["label"][:2]) == ["neg", "pos"]  # ClassLabel ids become their names
    chosen = read_hf_dataset(
        root,
        sequence_column="sequence",
        label_column="y",
        splits={"train": "default/train/*", "test": ["default/validation/*"]},
    )
    assert chosen.groupby("split").size().to_dict() == {"test": 2, "train": 2}
    (root / "default" / "extra.parquet").write_bytes(
        (root / "default/test/0000.parquet").read_bytes()
    )
    with pytest.raises(ValueError, match="its path names no split .* set source.splits"):
        read_hf_dataset(root, sequence_column="sequence", label_column="y")


def test_loaded_checkpoint_is_unchanged_by_fetching(tmp_path):
    source = write_hf(tmp_path / "ck", random_official_state(seed=3), fmt="bin")
    fetch_checkpoint(str(source), tmp_path / "dest")
    a, b = load_hyenadna(source), load_hyenadna(tmp_path / "dest")
    x = torch.randint(7, 11, (2, 30))
    assert torch.equal(a(x).logits, b(x).logits)


# --- Hub ids on the command line -------------------------------------------------------------


def test_predict_and_embed_take_a_hub_id(hub, tmp_path):
    from test_predict import _save_model

    from dnalm.cli import main as cli_main

    classifier = _save_model(tmp_path / "clf", window=40)
    hub.add("owner/dnalm-clf", files_of(classifier))
    publish(hub, tmp_path)
    fasta = tmp_path / "x.fa"
    fasta.write_text(">a\n" + "ACGTTGCA" * 12 + "\n>b\nGGGCCCAATT\n")
    env = hub_env(hub, tmp_path / "hf")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "dnalm.cli", *args, "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
        )

    out = cli("predict", "--model", "owner/dnalm-clf", "--fasta", str(fasta), "--out", "hub.tsv")
    assert out.returncode == 0, out.stderr
    assert (
        cli_main(
            [
                "predict",
                "--model",
                str(classifier),
                "--fasta",
                str(fasta),
                "--out",
                str(tmp_path / "local.tsv"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (tmp_path / "hub.tsv").read_text() == (tmp_path / "local.tsv").read_text()

    out = cli(
        "embed", "--model", REPO, "--fasta", str(fasta), "--out", "e.parquet", "--window", "32"
    )
    assert out.returncode == 0, out.stderr
    local = tmp_path / "local.parquet"
    assert (
        cli_main(
            [
                "embed",
                "--model",
                str(tmp_path / "hf-0"),
                "--fasta",
                str(fasta),
                "--out",
                str(local),
                "--window",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    hub_vectors = pd.read_parquet(tmp_path / "e.parquet")
    pd.testing.assert_frame_equal(hub_vectors, pd.read_parquet(local))

    out = cli("predict", "--model", REPO, "--fasta", str(fasta), "--out", "p.tsv")
    assert out.returncode == 2
    assert "is not a dnalm classifier (its config.json has model_type 'hyenadna')" in out.stderr
    out = cli("predict", "--model", "owner/missing", "--fasta", str(fasta), "--out", "p.tsv")
    assert out.returncode == 2 and "was not found on the Hub" in out.stderr
    assert "remote code ran" not in out.stderr + out.stdout
