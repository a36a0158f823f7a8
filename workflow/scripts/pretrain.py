"""pretrain: next-token language modelling on the pretraining corpus."""

from dnalm.runtime import job_log, limit_threads, pick_device

threads = limit_threads(snakemake.threads)

import json  # noqa: E402  (torch must start after the thread limits are set)
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from dnalm.models import config_for, count_parameters  # noqa: E402
from dnalm.shards import TokenShard  # noqa: E402
from dnalm.tokenization import load_tokenizer  # noqa: E402
from dnalm.training import TrainConfig, pretrain_lm  # noqa: E402

with job_log(snakemake.log[0]) as log:
    spec, out = snakemake.params.model, Path(snakemake.output.config).parent
    device = pick_device(snakemake.params.device)
    tokenizer = load_tokenizer(Path(snakemake.input.tokenizer).parent)
    train = TokenShard.open(Path(snakemake.input.train_bin).with_suffix(""))
    val = TokenShard.open(Path(snakemake.input.val_bin).with_suffix(""))
    cfg = TrainConfig(**snakemake.params.train)
    torch.manual_seed(cfg.seed)
    config = config_for(spec, tokenizer)
    model = AutoModelForCausalLM.from_config(config)
    params = count_parameters(model)
    log.info(
        "pretraining %s (%s %s, %d parameters) on %s with %d thread(s): %d train / %d val windows",
        spec["name"],
        spec["arch"],
        spec["size"],
        params,
        device,
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
        curve_path=snakemake.output.curve,
        log=log,
    )
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    summary.update(
        model=spec["name"],
        arch=spec["arch"],
        size=spec["size"],
        params=params,
        device=str(device),
        threads=threads,
        train=cfg.as_dict(),
        train_windows=len(train),
        val_windows=len(val),
    )
    Path(snakemake.output.summary).write_text(json.dumps(summary, indent=2) + "\n")
    log.info(
        "done: val loss %.4f (%.3f bits/base), %.0f tokens/s",
        summary["val_loss"],
        summary["val_bits_per_base"],
        summary["tokens_per_second"],
    )
