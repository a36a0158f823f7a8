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
- both stages, for a model entry with `init_from`: `published` (the directory the checkpoint
  was fetched into, `dnalm.hub`): its config is the architecture of every init.
- pretrain: `shards` train and val; `outputs` dir (save_pretrained directory), curve, summary;
  optional `start` (scratch, the default, or published: continue from the checkpoint's weights).
- finetune: `shards` train, val and test; `init` (published, pretrained or scratch),
  `pretrained` (model directory, for init pretrained), `seed`, `task`, `test_windows`
  (parquet); `outputs` metrics, predictions, curve, model; optional `data` (the task's config
  entry, shown in the model card). `train` may hold `freeze_backbone` (train the head alone).
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
    from dnalm.checkpointing import job_checkpoint
    from dnalm.shards import TokenShard, check_shard_tokenizer
    from dnalm.tokenization import complement_ids, load_tokenizer
    from dnalm.training import TrainConfig

    tokenizer = load_tokenizer(params["tokenizer"])
    shards = {split: TokenShard.open(prefix) for split, prefix in params["shards"].items()}
    for shard in shards.values():  # ids of another vocabulary would train on nonsense
        check_shard_tokenizer(shard, tokenizer)
    cfg = TrainConfig(**params["train"])
    complement = complement_ids(tokenizer) if cfg.rc_augment > 0 else None
    checkpoint = job_checkpoint(params, cfg, log, **fingerprint)
    spec = params["model"] | {"size": model_size(params["model"], params)}
    return Job(spec, tokenizer, shards, cfg, complement, checkpoint)


def check_published(params: dict[str, Any], tokenizer) -> None:
    """The fetched checkpoint must fit the model entry (size, context, tokenizer) before a
    network is built from it; the fetch job checked it too, this guards a hand-made job file."""
    if not params.get("published"):
        return
    from dnalm.hyenadna_config import check_entry
    from dnalm.tokenization import tokenizer_spec

    check_entry(params["published"], params["model"], tokenizer_spec(tokenizer))


def pretrain_job(params: dict[str, Any], device, threads: int, log: logging.Logger) -> None:
    """Next-token pretraining of one model; rank 0 saves the model, curve, summary and card.

    A model with a published checkpoint has its architecture; `start: published` continues
    from its weights instead of random ones."""
    import torch
    from transformers import AutoModelForCausalLM

    from dnalm import distributed
    from dnalm.hub import describe_source
    from dnalm.model_dir import write_model_card
    from dnalm.models import config_for, entry_overrides, load_hyenadna
    from dnalm.training import pretrain_lm

    job, outputs = setup_job(params, log), params["outputs"]
    check_published(params, job.tokenizer)
    start = params.get("start") or "scratch"
    if start not in ("scratch", "published") or (
        start == "published" and not params.get("published")
    ):
        raise ValueError(
            f"pretraining start {start!r}: use scratch, or published for a model with init_from"
        )
    torch.manual_seed(job.cfg.seed)
    if start == "published":
        model = load_hyenadna(params["published"], **entry_overrides(job.spec))
        log.info("pretraining continues from the published checkpoint %s", params["published"])
    else:
        model = AutoModelForCausalLM.from_config(
            config_for(job.spec, job.tokenizer, params.get("published"))
        )
    n_params = job.prepare(model, f"pretraining {job.spec['name']}", device, threads, log)
    train, val = job.shards["train"], job.shards["val"]
    summary = pretrain_lm(model, train, val, job.cfg, **job.run(device, outputs["curve"], log))
    if not distributed.is_main():
        return
    job.save(outputs["dir"], model)
    summary |= {k: job.spec[k] for k in ("arch", "size")}
    summary |= {"model": job.spec["name"], "params": n_params, "device": str(device)}
    summary |= {"threads": threads, "train": job.cfg.as_dict(), "start": start}
    summary |= {"train_windows": len(train), "val_windows": len(val)}
    if params.get("published"):
        summary["published"] = describe_source(params["published"])
    write_model_card(outputs["dir"], summary)
    write_json(outputs["summary"], summary)
    if job.checkpoint:
        job.checkpoint.remove()
    log.info(
        f"done: val loss {summary['val_loss']:.4f} ({summary['val_bits_per_base']:.3f} "
        f"bits/base), {summary['tokens_per_second']:.0f} tokens/s"
    )


def model_size(spec: dict[str, Any], params: dict[str, Any]) -> str:
    """The size a run reports: the entry's, else the published checkpoint's named size, else
    its shape (`d<width>x<layers>`)."""
    if spec.get("size"):
        return spec["size"]
    if params.get("published"):
        from dnalm.hyenadna_config import checkpoint_shape, read_checkpoint_config, size_of

        shape = checkpoint_shape(read_checkpoint_config(params["published"])[2])
        return size_of(shape) or f"d{shape['d_model']}x{shape['n_layer']}"
    raise ValueError(f"model {spec.get('name')!r} has no size and no init_from")


INITS = ("published", "pretrained", "scratch")


def build_classifier(params: dict[str, Any], tokenizer, labels: list[str]):
    """The classifier of one init: the published checkpoint's backbone, dnalm's pretrained
    backbone, or random weights, each with a new head. The head is drawn from the run's seed
    after building, the same for every init (`init_head`), so the inits differ in the backbone
    only. A model with a published checkpoint is its architecture for every init.
    """
    import torch
    from transformers import AutoModelForSequenceClassification

    from dnalm.models import config_for, entry_overrides, init_head, load_hyenadna

    init, published = params["init"], params.get("published")
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}, not {init!r}")
    if init == "published" and not published:
        raise ValueError(
            "init published needs the model's fetched init_from checkpoint (job key published)"
        )
    check_published(params, tokenizer)
    ids = {"id2label": dict(enumerate(labels)), "label2id": {x: i for i, x in enumerate(labels)}}
    torch.manual_seed(int(params["seed"]))
    if init == "pretrained":
        model = AutoModelForSequenceClassification.from_pretrained(
            params["pretrained"], num_labels=len(labels), **ids
        )
    elif init == "published":
        overrides = entry_overrides(params["model"]) | ids
        model = load_hyenadna(
            published, task="sequence_classification", num_labels=len(labels), **overrides
        )
    else:
        config = config_for(params["model"], tokenizer, published, num_labels=len(labels), **ids)
        model = AutoModelForSequenceClassification.from_config(config)
    init_head(model, int(params["seed"]))
    return model


def finetune_job(params: dict[str, Any], device, threads: int, log: logging.Logger) -> None:
    """Train one classifier (published, pretrained or scratch init), select on val, score test
    once; with `freeze_backbone`, only the head trains (a linear probe)."""
    from dnalm import distributed
    from dnalm.hub import describe_source
    from dnalm.models import count_parameters, freeze_backbone
    from dnalm.training import finetune_classifier, predict_proba

    train_opts = dict(params["train"])
    select_on = train_opts.pop("select_on")
    frozen = bool(train_opts.pop("freeze_backbone", False))
    init, seed, task = params["init"], int(params["seed"]), params["task"]
    job_params = {**params, "train": {**train_opts, "seed": seed}}
    fingerprint = {"init": init, "task": task, "select_on": select_on, "freeze_backbone": frozen}
    job = setup_job(job_params, log, **fingerprint)
    shards, labels = job.shards, job.shards["train"].meta["labels"]
    model = build_classifier(params, job.tokenizer, labels)
    n_params = job.prepare(model, f"{job.spec['name']} {init} seed {seed}", device, threads, log)
    trainable = freeze_backbone(model) if frozen else count_parameters(model)
    if frozen:
        log.info("freeze_backbone: only the head trains (%d of %d parameters)", trainable, n_params)
    run = job.run(device, params["outputs"]["curve"], log)
    result = finetune_classifier(
        model, shards["train"], shards["val"], job.cfg, select_on=select_on, **run
    )
    probs = predict_proba(model, shards["test"], job.cfg.batch_size, run["pad_id"], device)
    if not distributed.is_main():
        return
    test = score_test(shards["test"].labels, probs, result["best_step"], log)
    metrics = (
        {"task": task, "model": job.spec["name"], "arch": job.spec["arch"]}
        | {"size": job.spec["size"], "params": n_params, "init": init, "seed": seed}
        | {"test": test}
        | result
        | {"device": str(device), "train": job.cfg.as_dict()}
        | {"freeze_backbone": frozen, "trainable_params": trainable}
        | {"windows": {s: len(shards[s]) for s in ("train", "val", "test")}}
        | {"window_length": int(shards["train"].meta["window_length"])}
    )
    if params.get("published"):
        metrics["published"] = describe_source(params["published"])
    write_finetune_outputs(params, model, job, labels, probs, metrics)
    write_json(params["outputs"]["metrics"], metrics)
    if job.checkpoint:
        job.checkpoint.remove()


def score_test(labels, probs, best_step: int, log: logging.Logger) -> dict:
    """The test metrics of the selected weights: the one time the test split is scored."""
    from dnalm.metrics import as_written, classification_metrics

    test = classification_metrics(labels, as_written(probs))
    log.info(
        "test (scored once, weights of step %d): %s",
        best_step,
        "  ".join(f"{k} {v:.3f}" for k, v in test.items()),
    )
    return test


def write_finetune_outputs(
    params: dict[str, Any], model, job: Job, labels, probs, metrics: dict
) -> None:
    """Per-window test predictions, and the fine-tuned model directory (weights, tokenizer, what
    prediction needs to know about its training, and its model card)."""
    import pandas as pd

    from dnalm.files import write_tsv
    from dnalm.metrics import prediction_table
    from dnalm.model_dir import write_model_card, write_training_info

    windows = pd.read_parquet(params["test_windows"])
    write_tsv(params["outputs"]["predictions"], prediction_table(windows, labels, probs))
    model_dir = params["outputs"]["model"]
    job.save(model_dir, model)
    window_length = int(job.shards["train"].meta["window_length"])
    write_training_info(model_dir, window_length=window_length, labels=labels)
    write_model_card(model_dir, metrics, labels=labels, data=params.get("data"))


JOBS: dict[str, Callable[..., None]] = {"pretrain": pretrain_job, "finetune": finetune_job}


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
