"""A training run's resumable state: one file outside Snakemake's outputs, and its fingerprint.

Model and optimiser tensors, the torch RNG states, the objective's tensors and, as JSON, the
step, the loop's bookkeeping and the fingerprint (the settings and inputs it was written under).
Written whole by the main rank, read with `weights_only=True` by every rank; one whose
fingerprint differs from the current run's is ignored and later overwritten.
"""

from __future__ import annotations

import json
from logging import Logger, getLogger
from pathlib import Path
from typing import Any

import torch

from dnalm import distributed
from dnalm.files import atomic_path

# Settings that change how often a run reports or saves, not what it computes: a checkpoint
# written under other values of these is still resumed.
NOT_IN_FINGERPRINT = ("checkpoint_every", "log_every")
CHECKPOINT_FORMAT = 2  # the layout of a checkpoint's bookkeeping: an older one is not resumed


class Checkpoint:
    """The resumable state of one run, at `directory`/checkpoint.pt."""

    def __init__(self, directory: str | Path, fingerprint: dict, log: Logger | None = None):
        self.path = Path(directory) / "checkpoint.pt"
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.log = log or getLogger("dnalm")

    def load(self) -> dict | None:
        """The saved state if it belongs to this run, else None (and why, in the log)."""
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            state["meta"] = json.loads(state["meta"])
        except Exception as err:  # a foreign or damaged file: start afresh, say so
            self.log.warning("checkpoint %s is unreadable (%s): starting afresh", self.path, err)
            return None
        if state["meta"].get("fingerprint") != self.fingerprint:
            self.log.info(
                "checkpoint %s was written with other training parameters or inputs: ignoring "
                "it (it will be overwritten)",
                self.path,
            )
            return None
        self.log.info("resuming from checkpoint %s at step %d", self.path, state["meta"]["step"])
        return state

    def save(self, step: int, model, opt, meta: dict, tensors: dict) -> None:
        if not distributed.is_main():
            return
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        state = {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(),
            "rng": rng,
            "tensors": tensors,
            "meta": json.dumps({**meta, "step": step, "fingerprint": self.fingerprint}),
        }
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        self.log.info("checkpoint at step %d: %s", step, self.path)

    def restore(self, state: dict, model, opt) -> None:
        """Put a loaded state's model, optimiser and RNG states back."""
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"]["torch"])
        if "cuda" in state["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])

    def remove(self) -> None:
        """Called once the run's outputs are written: nothing is left to resume."""
        if distributed.is_main():
            self.path.unlink(missing_ok=True)


def fingerprint(cfg, **extra) -> dict:
    """What a run's result depends on: its `TrainConfig` (less reporting settings) and `extra`."""
    settings = {k: v for k, v in cfg.as_dict().items() if k not in NOT_IN_FINGERPRINT}
    return {"format": CHECKPOINT_FORMAT, "train": settings, **extra}


def job_checkpoint(params: dict[str, Any], cfg, log: Logger, **extra: Any) -> Checkpoint | None:
    """A training job's resumable state, when it names a `checkpoint` directory (else None).

    Its fingerprint is the training settings plus everything else the result depends on: the
    model, the tokenizer and the content of the shards and of the starting weights, so a changed
    input (even a genome of the same size) never resumes old state.
    """
    if not params.get("checkpoint"):
        return None
    from dnalm.fasta import file_checksum
    from dnalm.hub import read_source_record
    from dnalm.shards import shard_digest

    shards = {split: shard_digest(prefix) for split, prefix in params["shards"].items()}
    extra |= {"model": params["model"], "tokenizer": str(params["tokenizer"]), "shards": shards}
    if params.get("pretrained"):
        weights = Path(params["pretrained"]) / "model.safetensors"
        extra["pretrained"] = file_checksum(weights, "sha256")
    if params.get("published"):
        extra["published"] = read_source_record(params["published"])
        extra["start"] = params.get("start")
    return Checkpoint(params["checkpoint"], fingerprint(cfg, **extra), log)
