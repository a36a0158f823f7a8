"""`dnalm` command line: classify or embed sequences with a trained model outside Snakemake.

`--model` is a model directory or a Hugging Face Hub id (`owner/name`, optionally
`owner/name@revision`), fetched into the Hub cache and checked as the pipeline's fetch rules
check files (`dnalm.hub`); `HF_HUB_OFFLINE=1` works from the cache alone.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _classifier_dir(model: str) -> Path:
    """The directory of a fine-tuned dnalm classifier, a local path or a Hub id."""
    from dnalm.embed import DNALM_MODEL_TYPES
    from dnalm.hub import resolve_model_dir

    model_dir = resolve_model_dir(model)
    config = model_dir / "config.json"
    model_type = json.loads(config.read_text()).get("model_type") if config.exists() else None
    if config.exists() and model_type not in DNALM_MODEL_TYPES:
        raise ValueError(
            f"{model} is not a dnalm classifier (its config.json has model_type {model_type!r}): "
            "predict needs a fine-tuned model; fine-tune this checkpoint through the pipeline "
            "(init_from), or embed sequences with it (dnalm embed)"
        )
    return model_dir


def _predict(args: argparse.Namespace) -> int:
    from dnalm.runtime import limit_threads, pick_device

    limit_threads(args.threads)
    from dnalm.model_dir import load_classifier, training_window
    from dnalm.predict import predict_fasta

    device = pick_device(args.device)
    model_dir = _classifier_dir(args.model)
    model, tokenizer = load_classifier(model_dir, device)
    window = args.window or training_window(model_dir)
    if not window:
        raise SystemExit("the model directory does not record its window length: pass --window")
    n = predict_fasta(
        model,
        tokenizer,
        args.fasta,
        args.out,
        window=window,
        stride=args.stride or window,
        batch_size=args.batch_size,
        device=device,
        out_windows=args.windows_out,
        out_bed=args.bed_out,
        progress=not args.quiet,
    )
    print(f"{n} records classified -> {args.out}", file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from dnalm.runtime import limit_threads, pick_device

    limit_threads(args.threads)
    from dnalm.embed import default_window, embed, load_embedder

    device = pick_device(args.device)
    backbone, tokenizer, model_dir = load_embedder(args.model, device)
    window = args.window or default_window(backbone, tokenizer, model_dir)
    n = embed(
        backbone,
        tokenizer,
        args.out,
        window=window,
        stride=args.stride,
        fasta=args.fasta,
        table=args.table,
        sequence_column=args.sequence_column,
        id_column=args.id_column,
        label_column=args.label_column,
        per_window=args.per_window,
        batch_size=args.batch_size,
        device=device,
        progress=not args.quiet,
    )
    unit = "windows" if args.per_window else "sequences"
    print(f"{n} {unit} embedded -> {args.out}", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", type=int, help="window length in bases (default: the model's)")
    p.add_argument("--stride", type=int, help="window stride (default: the window length)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dnalm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "predict", help="per-record (and per-window) class probabilities for a FASTA"
    )
    p.add_argument(
        "--model",
        required=True,
        help="fine-tuned model: a directory (results/finetune/.../model) or a Hub id",
    )
    p.add_argument("--fasta", required=True, help="FASTA to classify (plain, gzip or bgzip)")
    p.add_argument("--out", required=True, help="per-record TSV to write")
    p.add_argument("--windows-out", help="also write per-window probabilities to this TSV")
    p.add_argument(
        "--bed-out",
        help="also write the windows as BED6 (name = predicted class, "
        "score = positive-class probability x 1000)",
    )
    _common(p)
    p.set_defaults(func=_predict)

    e = sub.add_parser(
        "embed",
        help="one vector per sequence (or per window) of a FASTA or a table, to parquet",
        description="Mean of the model's last hidden states over each window's non-pad tokens; "
        "a longer sequence gets the coverage-weighted mean of its windows (--per-window: one "
        "row per window). Output columns: id, [start, end], [label], vector.",
    )
    e.add_argument(
        "--model",
        required=True,
        help="a dnalm model directory (fine-tuned or pretrained), an official HyenaDNA "
        "checkpoint directory, or a Hub id of either",
    )
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--fasta", help="FASTA to embed (plain, gzip or bgzip)")
    source.add_argument("--table", help="table to embed: .parquet, .csv or .tsv (optionally .gz)")
    e.add_argument("--out", required=True, help="parquet file to write")
    e.add_argument("--per-window", action="store_true", help="one row per window")
    e.add_argument("--sequence-column", help="table column of sequences (default sequence, seq)")
    e.add_argument("--id-column", help="table column of ids (default id, chrom; else row<n>)")
    e.add_argument("--label-column", help="table column copied to the output (default label)")
    _common(e)
    e.set_defaults(func=_embed)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"dnalm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
