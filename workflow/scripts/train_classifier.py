"""finetune: train one classifier (init from the published checkpoint, from dnalm's pretraining
or random, the {init} wildcard), select on validation, score the test split once.

A job with more than one GPU (`resources.gpu`) runs under torchrun, one DDP rank per GPU; the
job first claims that many devices of this machine for itself (dnalm.gpus).
"""

from pathlib import Path

from dnalm.jobs import run_job

run_job(
    "finetune",
    {
        "model": snakemake.params.model,
        "init": snakemake.wildcards.init,
        "seed": int(snakemake.wildcards.seed),
        "task": snakemake.wildcards.task,
        "train": dict(snakemake.params.train),
        "device": snakemake.params.device,
        "tokenizer": str(Path(snakemake.input.tokenizer).parent),
        "pretrained": (
            str(Path(snakemake.input.pretrained).parent)
            if snakemake.wildcards.init == "pretrained"
            else None
        ),
        # the model's init_from checkpoint: its architecture, and the weights of init published
        "published": snakemake.input.get("published") or None,
        "data": snakemake.params.data,
        "shards": {
            s: str(Path(snakemake.input[f"{s}_bin"]).with_suffix(""))
            for s in ("train", "val", "test")
        },
        "test_windows": snakemake.input.test_windows,
        "outputs": {
            "metrics": snakemake.output.metrics,
            "predictions": snakemake.output.predictions,
            "curve": snakemake.output.curve,
            "model": snakemake.output.model,
        },
        "checkpoint": snakemake.params.checkpoint,
        "log": snakemake.log[0],
        "threads": snakemake.threads,
        "gpus": int(snakemake.resources.gpu),
        "nproc": max(1, int(snakemake.resources.gpu)),
    },
)
