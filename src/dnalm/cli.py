"""`dnalm` command line: classify FASTA files with a trained model outside Snakemake."""

from __future__ import annotations

import argparse
import sys


def _predict(args: argparse.Namespace) -> int:
    from dnalm.runtime import limit_threads, pick_device

    limit_threads(args.threads)
    from dnalm.model_dir import load_classifier, training_window
    from dnalm.predict import predict_fasta

    device = pick_device(args.device)
    model, tokenizer = load_classifier(args.model, device)
    window = args.window or training_window(args.model)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dnalm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "predict", help="per-record (and per-window) class probabilities for a FASTA"
    )
    p.add_argument(
        "--model", required=True, help="fine-tuned model directory (results/finetune/.../model)"
    )
    p.add_argument("--fasta", required=True, help="FASTA to classify (plain, gzip or bgzip)")
    p.add_argument("--out", required=True, help="per-record TSV to write")
    p.add_argument("--windows-out", help="also write per-window probabilities to this TSV")
    p.add_argument(
        "--bed-out",
        help="also write the windows as BED6 (name = predicted class, "
        "score = positive-class probability x 1000)",
    )
    p.add_argument(
        "--window", type=int, help="window length (default: the model's training windows)"
    )
    p.add_argument("--stride", type=int, help="window stride (default: the window length)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_predict)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"dnalm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
