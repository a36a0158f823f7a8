"""One training job (pretraining or fine-tuning), in this process or under torchrun.

`python -m dnalm.jobs {pretrain,finetune} --params job.json` runs a job described by a JSON file;
the Snakemake adapters call `run_job` with the same dictionary. A job asking for more than one
process (`nproc`, from the rule's `resources.gpu`) is relaunched under
`python -m torch.distributed.run --standalone --nproc_per_node N -m dnalm.jobs ...`, and every
process then runs this same code as one DDP rank. One process runs it directly, so the single-GPU
and CPU paths are the plain training loops.

No torch import at module level: thread pools must be sized (`limit_threads`) before torch starts,
and the launching process never needs torch at all.

Job parameters (every path relative to the working directory):
- both stages: `model` (the pipeline's model entry), `train` (the `TrainConfig` settings;
  fine-tuning adds `select_on`), `device` (auto, cpu, cuda), `tokenizer` (directory), `shards`
  (split -> token shard prefix), `outputs`, `log` (file or null), `threads` (of the whole job),
  `nproc` (processes, default 1), `backend` (null = nccl on CUDA, gloo on the CPU); optional
  `gpus` (devices of this machine the job claims for itself and its ranks, `dnalm.launch`) and
  `checkpoint` (a directory outside the outputs for the resumable state, deleted at the end).
- pretrain: `shards` train and val; `outputs` dir (save_pretrained directory), curve, summary.
- finetune: `shards` train, val and test; `init` (pretrained or scratch), `pretrained` (model
  directory, for init pretrained), `seed`, `task`, `test_windows` (parquet); `outputs` metrics,
  predictions, curve, model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dnalm.files import write_json
from dnalm.launch import claim_devices, launch_torchrun
from dnalm.runtime import job_log, limit_threads, pick_device

STAGES = ("pretrain", "finetune")
REQUIRED = {
    "pretrain": {"model", "train", "tokenizer", "shards", "outputs"},
    "finetune": {"model", "train", "tokenizer", "shards", "outputs", "init", "seed", "task"},
}


def check_params(stage: str, params: dict[str, Any]) -> None:
    """Fail early, naming what is missing, instead of deep inside a training run."""
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(STAGES)}")
    missing = sorted(REQUIRED[stage] - set(params))
    if missing:
        raise ValueError(f"{stage} job is missing {', '.join(missing)}")
    nproc = params.get("nproc", 1)
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive integer, not {nproc!r}")
    gpus = params.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise ValueError(f"gpus must be a whole number (0 or more), not {gpus!r}")
    if params.get("backend") not in (None, "gloo", "nccl"):
        raise ValueError(f"backend must be gloo or nccl, not {params['backend']!r}")
    batch_size = params["train"].get("batch_size", 0)
    if batch_size < nproc:
        raise ValueError(
            f"batch_size {batch_size} is smaller than the {nproc} processes; "
            "the batch size is the global batch, split across processes"
        )


def run_job(stage: str, params: dict[str, Any]) -> None:
    """Run one job here, or under torchrun when it asks for several processes.

    Inside a torchrun worker (`WORLD_SIZE` set) the job always runs here, as one rank, on the
    devices its launcher claimed. Otherwise the job first claims its `gpus` devices of this
    machine (none for `device: cpu`), which then hides every other device from it and its ranks.
    """
    check_params(stage, params)
    nproc = int(params.get("nproc", 1))
    if "WORLD_SIZE" in os.environ:
        _run_here(stage, params)
        return
    with claim_devices(stage, params) as claim:
        if nproc > 1:
            launch_torchrun("dnalm.jobs", stage, params, nproc, claim)
        else:
            _run_here(stage, params, claim.note)


def _run_here(stage: str, params: dict[str, Any], gpu_note: str | None = None) -> None:
    """One process (or one torchrun rank): set threads, join the group, train, leave the group."""
    threads = limit_threads(int(params.get("threads", 1)))
    main_rank = int(os.environ.get("RANK", "0")) == 0
    with job_log(params.get("log")) as log:
        if gpu_note:
            log.info("%s", gpu_note)
        if not main_rank:  # rank 0 reports progress; the others only problems
            from transformers.utils import logging as hf_logging

            log.setLevel(logging.WARNING)
            hf_logging.set_verbosity_error()
            hf_logging.disable_progress_bar()
        from dnalm import distributed

        device = pick_device(params.get("device", "auto"))
        device = distributed.init_distributed(device, params.get("backend"))
        try:
            JOBS[stage](params, device, threads, log)
        finally:
            distributed.teardown()


@dataclass
class Job:
    """What both stages set up alike from their parameters, and do alike with their model."""

    spec: dict
    tokenizer: Any
    shards: dict
    cfg: Any
    complement: Any
    checkpoint: Any

    def prepare(self, model, what: str, device, threads: int, log: logging.Logger) -> int:
        """Count the parameters, compile if the model entry asks, and say what is trained."""
        from dnalm import distributed
        from dnalm.models import compile_model, count_parameters

        n_params = count_parameters(model)
        if self.spec.get("compile"):
            compile_model(model)
        world = distributed.world_size()
        sizes = " / ".join(f"{len(shard)} {split}" for split, shard in self.shards.items())
        log.info(
            f"{what} ({self.spec['arch']} {self.spec['size']}, {n_params} parameters) on {device}"
            f"{f' x {world} processes' if world > 1 else ''}, {threads} thread(s): {sizes} windows"
        )
        return n_params

    def run(self, device, curve: str, log: logging.Logger) -> dict:
        """The keywords of `training.train` for this job."""
        run = {"pad_id": self.tokenizer.pad_token_id, "device": device, "curve_path": curve}
        return run | {"log": log, "checkpoint": self.checkpoint, "complement": self.complement}

    def save(self, directory: str | Path, model) -> None:
        model.save_pretrained(directory, safe_serialization=True)
        self.tokenizer.save_pretrained(directory)


def setup_job(params: dict[str, Any], log: logging.Logger, **fingerprint: Any) -> Job:
    """Tokenizer, shards, training settings, the complement map for reverse-complement
    augmentation, and the resumable state (when the job names a checkpoint directory)."""
    from dnalm.shards import TokenShard, check_shard_tokenizer
    from dnalm.tokenization import complement_ids, load_tokenizer
    from dnalm.training import TrainConfig

    tokenizer = load_tokenizer(params["tokenizer"])
    shards = {split: TokenShard.open(prefix) for split, prefix in params["shards"].items()}
    for shard in shards.values():  # ids of another vocabulary would train on nonsense
        check_shard_tokenizer(shard, tokenizer)
    cfg = TrainConfig(**params["train"])
    complement = complement_ids(tokenizer) if cfg.rc_augment > 0 else None
    checkpoint = _checkpoint(params, cfg, log, **fingerprint)
    return Job(params["model"], tokenizer, shards, cfg, complement, checkpoint)


def pretrain_job(params: dict[str, Any], device, threads: int, log: logging.Logger) -> None:
    """Next-token pretraining of one model; rank 0 saves the model, curve and summary."""
    import torch
    from transformers import AutoModelForCausalLM

    from dnalm import distributed
    from dnalm.models import config_for
    from dnalm.training import pretrain_lm

    job, outputs = setup_job(params, log), params["outputs"]
    torch.manual_seed(job.cfg.seed)
    model = AutoModelForCausalLM.from_config(config_for(job.spec, job.tokenizer))
    n_params = job.prepare(model, f"pretraining {job.spec['name']}", device, threads, log)
    train, val = job.shards["train"], job.shards["val"]
    summary = pretrain_lm(model, train, val, job.cfg, **job.run(device, outputs["curve"], log))
    if not distributed.is_main():
        return
    job.save(outputs["dir"], model)
    summary |= {k: job.spec[k] for k in ("arch", "size")}
    summary |= {"model": job.spec["name"], "params": n_params, "device": str(device)}
    summary |= {"threads": threads, "train": job.cfg.as_dict()}
    summary |= {"train_windows": len(train), "val_windows": len(val)}
    write_json(outputs["summary"], summary)
    if job.checkpoint:
        job.checkpoint.remove()
    log.info(
        f"done: val loss {summary['val_loss']:.4f} ({summary['val_bits_per_base']:.3f} "
        f"bits/base), {summary['tokens_per_second']:.0f} tokens/s"
    )


def build_classifier(params: dict[str, Any], tokenizer, labels: list[str]):
    """The classifier of one init: the pretrained backbone with a new head, or random weights;
    the head is drawn from the run's seed after building, the same for every init (`init_head`).
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from dnalm.models import config_for, init_head

    ids = {"num_labels": len(labels), "id2label": dict(enumerate(labels))}
    ids["label2id"] = {x: i for i, x in enumerate(labels)}
    torch.manual_seed(int(params["seed"]))
    if params["init"] == "pretrained":
        model = AutoModelForSequenceClassification.from_pretrained(params["pretrained"], **ids)
    elif params["init"] == "scratch":
        config = config_for(params["model"], tokenizer, **ids)
        model = AutoModelForSequenceClassification.from_config(config)
    else:
        raise ValueError(f"init must be pretrained or scratch, not {params['init']!r}")
    init_head(model, int(params["seed"]))
    return model


def finetune_job(params: dict[str, Any], device, threads: int, log: logging.Logger) -> None:
    """Train one classifier (pretrained or scratch init), select on val, score test once."""
    from dnalm import distributed
    from dnalm.training import finetune_classifier, predict_proba

    train_opts = dict(params["train"])
    select_on = train_opts.pop("select_on")
    init, seed, task = params["init"], int(params["seed"]), params["task"]
    job_params = {**params, "train": {**train_opts, "seed": seed}}
    job = setup_job(job_params, log, init=init, task=task, select_on=select_on)
    shards, labels = job.shards, job.shards["train"].meta["labels"]
    model = build_classifier(params, job.tokenizer, labels)
    n_params = job.prepare(model, f"{job.spec['name']} {init} seed {seed}", device, threads, log)
    run = job.run(device, params["outputs"]["curve"], log)
    result = finetune_classifier(
        model, shards["train"], shards["val"], job.cfg, select_on=select_on, **run
    )
    probs = predict_proba(model, shards["test"], job.cfg.batch_size, run["pad_id"], device)
    if not distributed.is_main():
        return
    test = score_test(shards["test"].labels, probs, result["best_step"], log)
    write_finetune_outputs(params, model, job, labels, probs)
    write_json(
        params["outputs"]["metrics"],
        {"task": task, "model": job.spec["name"]}
        | {k: job.spec[k] for k in ("arch", "size")}
        | {"params": n_params, "init": init, "seed": seed, "test": test}
        | result
        | {"device": str(device), "train": job.cfg.as_dict()}
        | {"windows": {s: len(shards[s]) for s in ("train", "val", "test")}}
        | {"window_length": int(shards["train"].meta["window_length"])},
    )
    if job.checkpoint:
        job.checkpoint.remove()


def score_test(labels, probs, best_step: int, log: logging.Logger) -> dict:
    """The test metrics of the selected weights: the one time the test split is scored."""
    from dnalm.metrics import classification_metrics

    test = classification_metrics(labels, probs)
    log.info(
        "test (scored once, weights of step %d): %s",
        best_step,
        "  ".join(f"{k} {v:.3f}" for k, v in test.items()),
    )
    return test


def write_finetune_outputs(params: dict[str, Any], model, job: Job, labels, probs) -> None:
    """Per-window test predictions, and the fine-tuned model directory (weights, tokenizer and
    what prediction needs to know about its training)."""
    import pandas as pd

    from dnalm.files import write_tsv
    from dnalm.metrics import prediction_table
    from dnalm.model_dir import write_training_info

    windows = pd.read_parquet(params["test_windows"])
    write_tsv(params["outputs"]["predictions"], prediction_table(windows, labels, probs))
    job.save(params["outputs"]["model"], model)
    window_length = int(job.shards["train"].meta["window_length"])
    write_training_info(params["outputs"]["model"], window_length=window_length, labels=labels)


JOBS: dict[str, Callable[..., None]] = {"pretrain": pretrain_job, "finetune": finetune_job}


def _checkpoint(params: dict[str, Any], cfg, log: logging.Logger, **extra: Any):
    """The job's resumable state, when it names a `checkpoint` directory (else None).

    Its fingerprint is the training settings plus everything else the result depends on: the
    model, the tokenizer and the content of the shards and of the starting weights, so a changed
    input (even a genome of the same size) never resumes old state.
    """
    if not params.get("checkpoint"):
        return None
    from dnalm.fasta import file_checksum
    from dnalm.shards import shard_digest
    from dnalm.training import Checkpoint, fingerprint

    shards = {split: shard_digest(prefix) for split, prefix in params["shards"].items()}
    extra |= {"model": params["model"], "tokenizer": str(params["tokenizer"]), "shards": shards}
    if params.get("pretrained"):
        weights = Path(params["pretrained"]) / "model.safetensors"
        extra["pretrained"] = file_checksum(weights, "sha256")
    return Checkpoint(params["checkpoint"], fingerprint(cfg, **extra), log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dnalm.jobs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", required=True, help="JSON file with the job parameters")
    args = parser.parse_args(argv)
    try:  # a JSON decoding error is a ValueError too
        params = json.loads(Path(args.params).read_text())
        if not isinstance(params, dict):
            raise ValueError("job parameters must be a JSON object")
        check_params(args.stage, params)
    except (OSError, ValueError) as err:
        print(f"dnalm.jobs: cannot read job parameters {args.params}: {err}", file=sys.stderr)
        return 2
    run_job(args.stage, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
