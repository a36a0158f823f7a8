"""`dnalm predict` throughput on the CPU: records/s, Mbp/s and peak RSS, beside two references.

For each micro model (hyena, gpt; random weights, which do not change the speed) and each FASTA,
three measurements run, each in a fresh subprocess so that the peak RSS is that step's own:

  read      the plain streaming read: `stream_windows` cuts every window, nothing else done
  forward   the model's raw forward on as many full windows (random tokens, same batch size):
            the model's own limit, without reading, encoding, aggregation or writing
  predict   `predict_fasta` as `dnalm predict` runs it, with the windows TSV and BED written

FASTA files: (a) the real viral references from ../shared/data (79 records, 1.63 Mbp, a few kbp
to ~200 kbp each), (b) generated: many short contigs (300-3000 bp) and (c) a few Mbp-long
records, both random ACGT written as plain 80-column FASTA (generation not timed, files deleted
at the end). Windows of 1024 bases, stride 1024, batch 64, one thread.

CPU time (user + system) is reported beside wall time: on a shared machine the CPU figures are
the steadier ones.

  python benchmarks/predict_throughput.py [--contigs 2000] [--long 2 --long-mbp 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VIRAL = ROOT.parent / "shared" / "data" / "genomes" / "viral" / "viral_reference_genomes.fasta"
WINDOW, BATCH = 1024, 64


def _child(mode: str, model_dir: str, fasta: str, out_dir: str) -> None:
    """One measurement; prints a JSON line."""
    from dnalm.runtime import limit_threads

    limit_threads(1)
    import torch

    from dnalm.model_dir import load_classifier
    from dnalm.predict import predict_fasta, stream_windows

    t0, c0 = time.perf_counter(), time.process_time()
    windows = bases = records = 0
    if mode == "read":
        for w in stream_windows(fasta, WINDOW, WINDOW):
            windows += 1
            if w.length is not None:
                records += 1
                bases += w.length
    elif mode == "forward":
        model, _ = load_classifier(model_dir, torch.device("cpu"))
        meta = json.loads(Path(out_dir, "counts.json").read_text())
        records, bases, windows = meta["records"], meta["bases"], meta["windows"]
        gen = torch.Generator().manual_seed(0)
        t0, c0 = time.perf_counter(), time.process_time()  # model load not timed
        with torch.no_grad():
            for start in range(0, windows, BATCH):
                n = min(BATCH, windows - start)
                ids = torch.randint(7, 11, (n, WINDOW), generator=gen)
                model(input_ids=ids, attention_mask=torch.ones_like(ids))
    else:
        model, tokenizer = load_classifier(model_dir, torch.device("cpu"))
        t0, c0 = time.perf_counter(), time.process_time()
        records = predict_fasta(
            model,
            tokenizer,
            fasta,
            Path(out_dir, "records.tsv"),
            window=WINDOW,
            stride=WINDOW,
            batch_size=BATCH,
            out_windows=Path(out_dir, "windows.tsv"),
            out_bed=Path(out_dir, "windows.bed"),
            progress=False,
        )
        meta = json.loads(Path(out_dir, "counts.json").read_text())
        bases, windows = meta["bases"], meta["windows"]
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {"records": records, "bases": bases, "windows": windows, "wall": wall, "cpu": cpu}
    print(json.dumps({**result, "rss_mb": rss}))


def _run(mode: str, model_dir: Path, fasta: Path, out_dir: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, str(model_dir), str(fasta), str(out_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{mode} on {fasta} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _write_random(path: Path, lengths: list[int], seed: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(seed)
    with open(path, "w") as fh:
        for i, n in enumerate(lengths):
            seq = rng.choice(np.frombuffer(b"ACGT", np.uint8), n).tobytes().decode()
            fh.write(f">contig{i}\n")
            fh.writelines(seq[j : j + 80] + "\n" for j in range(0, n, 80))
    return path


def _save_models(directory: Path) -> dict[str, Path]:
    import torch
    from transformers import AutoModelForSequenceClassification

    from dnalm.model_dir import write_training_info
    from dnalm.models import model_config
    from dnalm.tokenization import char_tokenizer

    tok = char_tokenizer()
    out = {}
    for arch in ("hyena", "gpt"):
        torch.manual_seed(0)
        cfg = model_config(
            arch, "micro", vocab_size=len(tok), pad_token_id=tok.pad_token_id, max_seq_len=WINDOW
        )
        cfg.update({"id2label": {0: "host", 1: "virus"}, "label2id": {"host": 0, "virus": 1}})
        path = directory / f"{arch}-micro"
        AutoModelForSequenceClassification.from_config(cfg).save_pretrained(path)
        tok.save_pretrained(path)
        write_training_info(path, window_length=WINDOW, labels=["host", "virus"])
        out[f"{arch}-micro"] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contigs", type=int, default=2000, help="short contigs in file (b)")
    parser.add_argument("--long", type=int, default=2, help="long records in file (c)")
    parser.add_argument("--long-mbp", type=float, default=2.0, help="Mbp per long record")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return

    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models = _save_models(tmp)
        rng = np.random.default_rng(1)
        files = {
            "viral references (real)": VIRAL,
            f"{args.contigs} short contigs": _write_random(
                tmp / "short.fa", rng.integers(300, 3001, args.contigs).tolist(), 2
            ),
            f"{args.long} x {args.long_mbp:g} Mbp records": _write_random(
                tmp / "long.fa", [int(args.long_mbp * 1e6)] * args.long, 3
            ),
        }
        rows = []
        for label, fasta in files.items():
            out = tmp / "out"
            out.mkdir(exist_ok=True)
            read = _run("read", models["hyena-micro"], fasta, out)
            (out / "counts.json").write_text(json.dumps(read))
            rows.append(("-", label, "read", read))
            for name, model_dir in models.items():
                for mode in ("forward", "predict"):
                    rows.append((name, label, mode, _run(mode, model_dir, fasta, out)))
                    print(name, label, mode, json.dumps(rows[-1][3]), file=sys.stderr)

    print(
        "| model | FASTA | step | records | Mbp | windows | records/s (CPU) | Mbp/s (CPU) "
        "| Mbp/s (wall) | peak RSS MB |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, label, mode, r in rows:
        mbp = r["bases"] / 1e6
        print(
            f"| {name} | {label} | {mode} | {r['records']} | {mbp:.2f} | {r['windows']} "
            f"| {r['records'] / r['cpu']:.1f} | {mbp / r['cpu']:.3f} | {mbp / r['wall']:.3f} "
            f"| {r['rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
