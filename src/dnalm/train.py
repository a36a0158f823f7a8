"""One training job (pretraining or fine-tuning), in this process or under torchrun.

`python -m dnalm.train {pretrain,finetune} --params job.json` runs a job described by a JSON file;
the Snakemake adapters call `run_job` with the same dictionary. A job asking for more than one
process (`nproc`, from the rule's `resources.gpu`) is relaunched under
`python -m torch.distributed.run --standalone --nproc_per_node N -m dnalm.train ...`, and every
process then runs this same code as one DDP rank. One process runs it directly, so the single-GPU
and CPU paths are the plain training loops.

No torch import at module level: thread pools must be sized (`limit_threads`) before torch starts,
and the launching process never needs torch at all.

Job parameters (every path relative to the working directory):
- both stages: `model` (the pipeline's model entry: name, arch, size, max_seq_len), `train` (the
  `TrainConfig` settings; fine-tuning adds `select_on`), `device` (auto, cpu, cuda), `tokenizer`
  (tokenizer directory), `shards` (split -> token shard prefix), `outputs`, `log` (log file or
  null), `threads` (threads of the whole job), `nproc` (processes, default 1) and `backend`
  (null = nccl on CUDA, gloo on the CPU).
- both stages, optional: `gpus` (the rule's `resources.gpu`, default 0: the job first takes that
  many devices of this machine for itself and its ranks, `dnalm.gpus.claim_gpus`) and
  `checkpoint` (a directory outside the outputs: the resumable state is saved there every
  `train.checkpoint_every` steps, resumed when its recorded settings match, and deleted once the
  outputs are written).
- pretrain: `shards` train and val; `outputs` dir (save_pretrained directory), curve, summary.
- finetune: `shards` train, val and test; `init` (pretrained or scratch), `pretrained` (model
  directory, for init pretrained), `seed`, `task`, `test_windows` (parquet); `outputs` metrics,
  predictions, curve, model.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dnalm.files import write_json
from dnalm.gpus import GpuClaim, claim_gpus
from dnalm.runtime import THREAD_ENV_VARS, job_log, limit_threads, pick_device

STAGES = ("pretrain", "finetune")
REQUIRED = {
    "pretrain": {"model", "train", "tokenizer", "shards", "outputs"},
    "finetune": {"model", "train", "tokenizer", "shards", "outputs", "init", "seed", "task"},
}


def check_params(stage: str, params: dict[str, Any], source: str = "job parameters") -> None:
    """Fail early, naming what is missing, instead of deep inside a training run."""
    if stage not in STAGES:
        raise ValueError(f"unknown training stage {stage!r}; choose one of {', '.join(STAGES)}")
    missing = sorted(REQUIRED[stage] - set(params))
    if missing:
        raise ValueError(f"{source}: {stage} job is missing {', '.join(missing)}")
    nproc = params.get("nproc", 1)
    if not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"{source}: nproc must be a positive integer, not {nproc!r}")
    gpus = params.get("gpus", 0)
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        raise ValueError(f"{source}: gpus must be a whole number (0 or more), not {gpus!r}")
    if params.get("backend") not in (None, "gloo", "nccl"):
        raise ValueError(f"{source}: backend must be gloo or nccl, not {params['backend']!r}")
    batch_size = params["train"].get("batch_size", 0)
    if batch_size < nproc:
        raise ValueError(
            f"{source}: batch_size {batch_size} is smaller than the {nproc} processes; "
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
    gpus = 0 if params.get("device", "auto") == "cpu" else int(params.get("gpus", 0))
    label = params.get("log") or f"{stage} job"
    with contextlib.ExitStack() as stack:
        try:
            claim = stack.enter_context(
                claim_gpus(gpus, setting=f"resources.{stage}.gpu", label=label)
            )
        except Exception as err:  # the job log must say why the job never started
            _log_failure(params.get("log"), f"{stage}: {err}")
            raise
        if nproc > 1:
            launch_torchrun(stage, params, nproc, claim)
        else:
            _run_here(stage, params, claim.note)


def torchrun_command(stage: str, params_file: str | Path, nproc: int) -> list[str]:
    """The torchrun argument list (never a shell string) that runs this module on every rank."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(nproc),
        "-m",
        "dnalm.train",
        stage,
        "--params",
        str(params_file),
    ]


def launch_torchrun(
    stage: str, params: dict[str, Any], nproc: int, claim: GpuClaim | None = None
) -> None:
    """Run the job on `nproc` local processes; their output (every rank's) goes to the job log.

    The job's threads are shared out between the processes, so N ranks never oversubscribe the
    cores Snakemake gave the job. torchrun inherits the `claim`'s locks, so its devices stay
    taken until it ends even if this process is killed first.
    """
    claim = claim or GpuClaim()
    threads = max(1, int(params.get("threads", 1)) // nproc)
    worker = {**params, "threads": threads, "nproc": nproc, "log": None}
    env = {**os.environ, **{var: str(threads) for var in THREAD_ENV_VARS}}
    log_path = params.get("log")
    with tempfile.TemporaryDirectory(prefix="dnalm-train-") as tmp:
        params_file = Path(tmp) / "params.json"
        params_file.write_text(json.dumps(worker, indent=2) + "\n")
        cmd = torchrun_command(stage, params_file, nproc)
        if log_path is None:
            if claim.note:
                print(f"{stage}: {claim.note}", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, env=env, check=False, pass_fds=claim.fds)
        else:
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "w") as log:
                if claim.note:
                    log.write(f"{stage}: {claim.note}\n")
                log.write(f"{stage}: {nproc} processes x {threads} thread(s): {' '.join(cmd)}\n")
                log.flush()
                proc = subprocess.run(
                    cmd,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=False,
                    pass_fds=claim.fds,
                )
    if proc.returncode != 0:
        where = f"; see {log_path}" if log_path else ""
        raise RuntimeError(
            f"{stage} under torchrun ({nproc} processes) failed with exit status "
            f"{proc.returncode}{where}"
        )


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


def pretrain_job(params: dict[str, Any], device, threads: int, log: logging.Logger) -> None:
    """Next-token pretraining of one model; rank 0 saves the model, curve and summary."""
    import torch
    from transformers import AutoModelForCausalLM

    from dnalm import distributed
    from dnalm.models import compile_model, config_for, count_parameters
    from dnalm.shards import TokenShard
    from dnalm.tokenization import complement_ids, load_tokenizer
    from dnalm.training import TrainConfig, pretrain_lm

    spec, outputs = params["model"], params["outputs"]
    tokenizer = load_tokenizer(params["tokenizer"])
    train = TokenShard.open(params["shards"]["train"])
    val = TokenShard.open(params["shards"]["val"])
    cfg = TrainConfig(**params["train"])
    complement = complement_ids(tokenizer) if cfg.rc_augment > 0 else None
    checkpoint = _checkpoint(params, cfg, log)
    torch.manual_seed(cfg.seed)
    model = AutoModelForCausalLM.from_config(config_for(spec, tokenizer))
    n_params = count_parameters(model)
    if spec.get("compile"):
        compile_model(model)
    log.info(
        "pretraining %s (%s %s, %d parameters) on %s%s with %d thread(s): %d train / %d val windows",
        spec["name"],
        spec["arch"],
        spec["size"],
        n_params,
        device,
        _processes(distributed.world_size()),
        threads,
        len(train),
        len(val),
    )
    summary = pretrain_lm(
        model,
        train,
        val,
        cfg,
        pad_id=tokenizer.pad_token_id,
        device=device,
        curve_path=outputs["curve"],
        log=log,
        checkpoint=checkpoint,
        complement=complement,
    )
    if not distributed.is_main():
        return
    model.save_pretrained(outputs["dir"], safe_serialization=True)
    tokenizer.save_pretrained(outputs["dir"])
    summary.update(
        model=spec["name"],
        arch=spec["arch"],
        size=spec["size"],
        params=n_params,
        device=str(device),
        threads=threads,
        train=cfg.as_dict(),
        train_windows=len(train),
        val_windows=len(val),
    )
    write_json(outputs["summary"], summary)
    if checkpoint:
        checkpoint.remove()
    log.info(
        "done: val loss %.4f (%.3f bits/base), %.0f tokens/s",
        summary["val_loss"],
        summary["val_bits_per_base"],
        summary["tokens_per_second"],
    )


def finetune_job(params: dict[str, Any], device, threads: int, log: logging.Logger) -> None:
    """Train one classifier (pretrained or scratch init), select on val, score test once."""
    import numpy as np
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification

    from dnalm import distributed
    from dnalm.metrics import classification_metrics
    from dnalm.model_dir import write_training_info
    from dnalm.models import compile_model, config_for, count_parameters
    from dnalm.shards import TokenShard
    from dnalm.tokenization import complement_ids, load_tokenizer
    from dnalm.training import TrainConfig, finetune_classifier, predict_proba

    spec, init, outputs = params["model"], params["init"], params["outputs"]
    seed = int(params["seed"])
    tokenizer = load_tokenizer(params["tokenizer"])
    shards = {s: TokenShard.open(params["shards"][s]) for s in ("train", "val", "test")}
    labels = shards["train"].meta["labels"]
    label_kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {x: i for i, x in enumerate(labels)},
    }
    train_opts = dict(params["train"])
    select_on = train_opts.pop("select_on")
    cfg = TrainConfig(**train_opts, seed=seed)
    complement = complement_ids(tokenizer) if cfg.rc_augment > 0 else None
    checkpoint = _checkpoint(params, cfg, log, init=init, task=params["task"], select_on=select_on)

    torch.manual_seed(seed)  # the same head initialisation for both inits of one seed
    if init == "pretrained":
        model = AutoModelForSequenceClassification.from_pretrained(
            params["pretrained"], **label_kwargs
        )
    elif init == "scratch":
        model = AutoModelForSequenceClassification.from_config(
            config_for(spec, tokenizer, **label_kwargs)
        )
    else:
        raise ValueError(f"init must be pretrained or scratch, not {init!r}")
    n_params = count_parameters(model)
    if spec.get("compile"):
        compile_model(model)
    log.info(
        "%s %s seed %d (%d parameters, %s%s, %d thread(s)): %d train / %d val / %d test windows",
        spec["name"],
        init,
        seed,
        n_params,
        device,
        _processes(distributed.world_size()),
        threads,
        *(len(shards[s]) for s in shards),
    )
    result = finetune_classifier(
        model,
        shards["train"],
        shards["val"],
        cfg,
        pad_id=tokenizer.pad_token_id,
        device=device,
        curve_path=outputs["curve"],
        select_on=select_on,
        log=log,
        checkpoint=checkpoint,
        complement=complement,
    )
    probs = predict_proba(model, shards["test"], cfg.batch_size, tokenizer.pad_token_id, device)
    if not distributed.is_main():
        return
    test = classification_metrics(shards["test"].labels, probs)
    log.info(
        "test (scored once, weights of step %d): %s",
        result["best_step"],
        "  ".join(f"{k} {v:.3f}" for k, v in test.items()),
    )

    windows = pd.read_parquet(params["test_windows"])
    table = windows[["genome", "chrom", "start", "end", "label"]].copy()
    for i, name in enumerate(labels):
        table[f"prob_{name}"] = probs[:, i].round(6)
    table["predicted"] = [labels[i] for i in np.asarray(probs).argmax(axis=1)]
    table.to_csv(outputs["predictions"], sep="\t", index=False)

    out = Path(outputs["model"])
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    window_length = int(shards["train"].meta["window_length"])
    write_training_info(out, window_length=window_length, labels=labels)
    metrics = {
        "task": params["task"],
        "model": spec["name"],
        "arch": spec["arch"],
        "size": spec["size"],
        "params": n_params,
        "init": init,
        "seed": seed,
        "test": test,
        "val": result["val"],
        "best_step": result["best_step"],
        "last_step": result["last_step"],
        "early_stopped": result["early_stopped"],
        "class_weights": result["class_weights"],
        "resumed_from_step": result["resumed_from_step"],
        "selected_on": select_on,
        "seconds": result["seconds"],
        "device": str(device),
        "processes": result["processes"],
        "train": cfg.as_dict(),
        "windows": {s: len(shards[s]) for s in shards},
        "window_length": window_length,
    }
    write_json(outputs["metrics"], metrics)
    if checkpoint:
        checkpoint.remove()


JOBS: dict[str, Callable[..., None]] = {"pretrain": pretrain_job, "finetune": finetune_job}


def _checkpoint(params: dict[str, Any], cfg, log: logging.Logger, **extra: Any):
    """The job's resumable state, when it names a `checkpoint` directory (else None).

    Its fingerprint is the training settings plus everything else the result depends on: the
    model, tokenizer and shards (paths and sizes), so a changed input never resumes old state.
    """
    if not params.get("checkpoint"):
        return None
    from dnalm.training import Checkpoint, fingerprint

    shards = {}
    for split, prefix in params["shards"].items():
        files = sorted(Path(prefix).parent.glob(Path(prefix).name + ".*"))
        shards[split] = {"prefix": str(prefix), "bytes": [f.stat().st_size for f in files]}
    extra |= {"model": params["model"], "tokenizer": str(params["tokenizer"]), "shards": shards}
    if params.get("pretrained"):
        weights = Path(params["pretrained"]) / "model.safetensors"
        extra["pretrained"] = {"path": str(weights), "mtime_ns": weights.stat().st_mtime_ns}
    return Checkpoint(params["checkpoint"], fingerprint(cfg, **extra), log)


def _log_failure(log_path: str | Path | None, message: str) -> None:
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        Path(log_path).write_text(message + "\n")


def _processes(world: int) -> str:
    return f" x {world} processes" if world > 1 else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dnalm.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--params", required=True, help="JSON file with the job parameters")
    args = parser.parse_args(argv)
    try:
        params = json.loads(Path(args.params).read_text())
    except (OSError, json.JSONDecodeError) as err:
        print(f"dnalm.train: cannot read job parameters {args.params}: {err}", file=sys.stderr)
        return 2
    if not isinstance(params, dict):
        print(f"dnalm.train: {args.params}: job parameters must be a JSON object", file=sys.stderr)
        return 2
    try:
        check_params(args.stage, params, source=args.params)
    except ValueError as err:
        print(f"dnalm.train: {err}", file=sys.stderr)
        return 2
    run_job(args.stage, params)
    return 0


if __name__ == "__main__":
    sys.exit(main())
