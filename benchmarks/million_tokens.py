"""HyenaDNA's point, a 1M-token context, on this CPU: time and peak memory of the `large-1m` model.

Three cases, each run in a fresh subprocess (so its peak resident memory is its own) at each
thread count:

  forward   one inference forward pass (`torch.inference_mode`) of the causal LM on one
            sequence of `--length` tokens (1,048,576 by default)
  train     one training step at that length: forward, backward and a fused AdamW step, with
            gradient checkpointing per block (`model.activation_checkpointing_enable()`)
  predict   `dnalm.predict.predict_fasta` (what `dnalm predict` runs) with windows of `--length`
            bases on one `--record-mbp` Mbp record, with a throw-away classifier directory of
            random weights (random weights do not change the speed)

The model is `large-1m` (d_model 256, 8 layers, 6.6M parameters) with `max_seq_len` set to
`--length`. Building it and writing the FASTA are not timed. Peak memory is the subprocess's
resident high-water mark (VmHWM), imports (~0.5 GB) included: what a machine must have.

    python benchmarks/million_tokens.py                       # 1 and 2 threads, hours
    python benchmarks/million_tokens.py --length 131072 --threads 1 --cases forward,train
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("forward", "train", "predict")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=1 << 20, help="tokens (and window bases)")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--size", default="large-1m", help="hyena model size")
    parser.add_argument("--record-mbp", type=float, default=2.0, help="predict: record length")
    parser.add_argument(
        "--memory-limit-gib",
        type=float,
        default=24.0,
        help="address-space limit of each case's process (0: none): on a shared machine running "
        "out fails that case instead of waking the OOM killer. The 1M training step needs 17 GiB "
        "resident and failed under a 14 GiB limit (it ran under 21)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--one", nargs=3, metavar=("CASE", "THREADS", "DIR"), help=argparse.SUPPRESS
    )
    return parser.parse_args(argv)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _model_config(args, **overrides):
    from dnalm.models import model_config

    return model_config(
        "hyena", args.size, vocab_size=12, pad_token_id=4, max_seq_len=args.length, **overrides
    )


def _run_case(case: str, threads: int, workdir: Path, args) -> dict:
    """One measurement in this (fresh) process."""
    from dnalm.runtime import limit_threads

    if args.memory_limit_gib > 0:
        limit = int(args.memory_limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    limit_threads(threads)
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    result: dict = {"case": case, "threads": threads, "length": args.length}
    if case == "predict":
        from dnalm.model_dir import load_classifier
        from dnalm.predict import predict_fasta

        model, tokenizer = load_classifier(workdir / "model", torch.device("cpu"))
        start, cpu = time.perf_counter(), time.process_time()
        predict_fasta(
            model,
            tokenizer,
            workdir / "record.fa",
            workdir / f"records-{threads}.tsv",
            window=args.length,
            stride=args.length,
            out_windows=workdir / f"windows-{threads}.tsv",
            progress=False,
        )
        windows = len((workdir / f"windows-{threads}.tsv").read_text().splitlines()) - 1
        result.update(windows=windows, tokens=windows * args.length)
    else:
        model = AutoModelForCausalLM.from_config(_model_config(args))
        x = torch.randint(7, 11, (1, args.length))
        if case == "forward":
            model.eval()
            start, cpu = time.perf_counter(), time.process_time()
            with torch.inference_mode():
                model(input_ids=x)
        else:
            model.train()
            model.activation_checkpointing_enable()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            start, cpu = time.perf_counter(), time.process_time()
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            optimizer.step()
            result["loss"] = float(loss)
        result["tokens"] = args.length
    result["wall_s"] = time.perf_counter() - start
    result["cpu_s"] = time.process_time() - cpu
    result["peak_rss_gib"] = _status_kib("VmHWM") / 2**20
    return result


def _prepare_predict(workdir: Path, args) -> None:
    """A classifier directory (random large-1m weights, char tokenizer) and one long record."""
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification

    from dnalm.model_dir import write_training_info
    from dnalm.tokenization import char_tokenizer

    torch.manual_seed(0)
    labels = {"id2label": {0: "host", 1: "virus"}, "label2id": {"host": 0, "virus": 1}}
    model = AutoModelForSequenceClassification.from_config(_model_config(args, **labels))
    model.save_pretrained(workdir / "model")
    char_tokenizer().save_pretrained(workdir / "model")
    write_training_info(workdir / "model", window_length=args.length, labels=["host", "virus"])
    bases = np.random.default_rng(0).choice(
        np.frombuffer(b"ACGT", np.uint8), int(args.record_mbp * 1e6)
    )
    with open(workdir / "record.fa", "w") as fh:
        fh.write(">record\n")
        text = bases.tobytes().decode()
        fh.writelines(text[i : i + 80] + "\n" for i in range(0, len(text), 80))


def _in_subprocess(case: str, threads: int, workdir: Path, argv: list[str]) -> dict:
    command = [sys.executable, __file__, *argv, "--one", case, str(threads), str(workdir)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        return {"case": case, "threads": threads, "length": None, "error": done.returncode}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table(rows: list[dict]) -> str:
    lines = [
        "| case | threads | tokens | wall | CPU | tokens/s (wall) | peak RSS GiB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['case']} | {r['threads']} | failed (exit {r['error']}) | | | | |")
            continue
        lines.append(
            f"| {r['case']} | {r['threads']} | {r['tokens']:,} | {r['wall_s']:,.0f} s | "
            f"{r['cpu_s']:,.0f} s | {r['tokens'] / r['wall_s']:,.0f} | {r['peak_rss_gib']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    sys.path.insert(0, str(ROOT / "src"))
    if args.one:
        case, threads, workdir = args.one
        print(json.dumps(_run_case(case, int(threads), Path(workdir), args)))
        return
    cases = args.cases.split(",")
    unknown = set(cases) - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}; choose from {', '.join(CASES)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dnalm-1m-") as tmp:
        workdir = Path(tmp)
        if "predict" in cases:
            _prepare_predict(workdir, args)
        for case in cases:
            for threads in (int(t) for t in args.threads.split(",")):
                print(f"  {case}, {threads} thread(s) ...", file=sys.stderr, flush=True)
                rows.append(_in_subprocess(case, threads, workdir, argv))
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    import torch

    print(
        f"# {args.size}, {args.length:,} tokens: torch {torch.__version__}, CPU "
        f"({os.cpu_count()} cores), load average {os.getloadavg()[0]:.1f}\n"
    )
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "args": vars(args) | {"json": None}}))


if __name__ == "__main__":
    main()
