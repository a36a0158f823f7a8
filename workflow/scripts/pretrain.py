"""pretrain: next-token language modelling on the pretraining corpus.

A job with more than one GPU (`resources.gpu`) runs under torchrun, one DDP rank per GPU; the
job first claims that many devices of this machine for itself (dnalm.gpus).
"""

from pathlib import Path

from dnalm.jobs import run_job

run_job(
    "pretrain",
    {
        "model": snakemake.params.model,
        "train": dict(snakemake.params.train),
        "device": snakemake.params.device,
        "tokenizer": str(Path(snakemake.input.tokenizer).parent),
        "shards": {
            s: str(Path(snakemake.input[f"{s}_bin"]).with_suffix("")) for s in ("train", "val")
        },
        "outputs": {
            "dir": str(Path(snakemake.output.config).parent),
            "curve": snakemake.output.curve,
            "summary": snakemake.output.summary,
        },
        "checkpoint": snakemake.params.checkpoint,
        "published": snakemake.input.get("published") or None,
        "start": snakemake.params.start,
        "log": snakemake.log[0],
        "threads": snakemake.threads,
        "gpus": int(snakemake.resources.gpu),
        "nproc": max(1, int(snakemake.resources.gpu)),
    },
)
