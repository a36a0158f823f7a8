"""finetune / scratch: train one classifier (init from pretrained weights or random), select on
validation, score the test split once."""

from dnalm.runtime import job_log, limit_threads, pick_device

threads = limit_threads(snakemake.threads)

import json  # noqa: E402  (torch must start after the thread limits are set)
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForSequenceClassification  # noqa: E402

from dnalm.metrics import classification_metrics  # noqa: E402
from dnalm.models import config_for, count_parameters  # noqa: E402
from dnalm.predict import write_training_info  # noqa: E402
from dnalm.shards import TokenShard  # noqa: E402
from dnalm.tokenization import load_tokenizer  # noqa: E402
from dnalm.training import TrainConfig, finetune_classifier, predict_proba  # noqa: E402

with job_log(snakemake.log[0]) as log:
    spec, init, seed = snakemake.params.model, snakemake.params.init, int(snakemake.wildcards.seed)
    device = pick_device(snakemake.params.device)
    tokenizer = load_tokenizer(Path(snakemake.input.tokenizer).parent)
    shards = {
        s: TokenShard.open(Path(snakemake.input[f"{s}_bin"]).with_suffix(""))
        for s in ("train", "val", "test")
    }
    labels = shards["train"].meta["labels"]
    label_kwargs = {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {x: i for i, x in enumerate(labels)},
    }
    train_opts = dict(snakemake.params.train)
    select_on = train_opts.pop("select_on")
    cfg = TrainConfig(**train_opts, seed=seed)

    torch.manual_seed(seed)  # the same head initialisation for both inits of one seed
    if init == "pretrained":
        model = AutoModelForSequenceClassification.from_pretrained(
            Path(snakemake.input.pretrained).parent, **label_kwargs
        )
    else:
        config = config_for(spec, tokenizer, **label_kwargs)
        model = AutoModelForSequenceClassification.from_config(config)
    params = count_parameters(model)
    log.info(
        "%s %s seed %d (%d parameters, %s, %d thread(s)): %d train / %d val / %d test windows",
        spec["name"],
        init,
        seed,
        params,
        device,
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
        curve_path=snakemake.output.curve,
        select_on=select_on,
        log=log,
    )
    probs = predict_proba(model, shards["test"], cfg.batch_size, tokenizer.pad_token_id, device)
    test = classification_metrics(shards["test"].labels, probs)
    log.info(
        "test (scored once, weights of step %d): %s",
        result["best_step"],
        "  ".join(f"{k} {v:.3f}" for k, v in test.items()),
    )

    windows = pd.read_parquet(snakemake.input.test_windows)
    table = windows[["genome", "chrom", "start", "end", "label"]].copy()
    for i, name in enumerate(labels):
        table[f"prob_{name}"] = probs[:, i].round(6)
    table["predicted"] = [labels[i] for i in probs.argmax(axis=1)]
    table.to_csv(snakemake.output.predictions, sep="\t", index=False)

    out = Path(snakemake.output.model)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    window_length = int(shards["train"].meta["window_length"])
    write_training_info(out, window_length=window_length, labels=labels)
    metrics = {
        "task": snakemake.wildcards.task,
        "model": spec["name"],
        "arch": spec["arch"],
        "size": spec["size"],
        "params": params,
        "init": init,
        "seed": seed,
        "test": test,
        "val": result["val"],
        "best_step": result["best_step"],
        "selected_on": select_on,
        "seconds": result["seconds"],
        "device": str(device),
        "train": cfg.as_dict(),
        "windows": {s: len(shards[s]) for s in shards},
        "window_length": window_length,
    }
    Path(snakemake.output.metrics).write_text(json.dumps(metrics, indent=2) + "\n")
