# Config, sheets, wildcard constraints and input functions shared by every stage.
import os
import re
from pathlib import Path

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dnalm.model_sizes import MODEL_SIZES
from dnalm.sources import parse_source
from dnalm.windows import split_groups

SPLITS = ["train", "val", "test"]
CORPUS_SPLITS = ["train", "val"]
INITS = ["pretrained", "scratch"]


validate(config, schema="../schemas/config.schema.yaml")


def read_genome_sheet(path):
    """The genome sheet, validated, with booleans parsed and sources classified."""
    if not Path(path).exists():
        raise WorkflowError(f"genome sheet {path} does not exist (config key: genomes)")
    sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    missing = {"genome", "label", "group", "source"} - set(sheet.columns)
    if missing:
        raise WorkflowError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; a genome sheet needs "
            "genome, label, group, source (and optionally checksum, pretrain, split)"
        )
    for column, default in (("checksum", ""), ("pretrain", "true"), ("split", "")):
        if column not in sheet:
            sheet[column] = default
    sheet["pretrain"] = sheet["pretrain"].replace("", "true").str.lower()
    validate(sheet, schema="../schemas/genomes.schema.yaml")
    sheet["pretrain"] = sheet["pretrain"].isin(["true", "yes", "1"])
    dupes = sheet.loc[sheet["genome"].duplicated(), "genome"].tolist()
    if dupes:
        raise WorkflowError(
            f"{path}: duplicate genome name(s) {', '.join(dupes)}; names must be unique"
        )
    sheet["kind"] = [
        parse_source(s, f"{path}, genome {g!r}").kind
        for g, s in zip(sheet["genome"], sheet["source"])
    ]
    return sheet.set_index("genome", drop=False)


GENOMES = read_genome_sheet(config["genomes"])
TASKS = config["tasks"]
MODELS = config["models"]
TOKENIZERS = config["tokenizers"]
SEEDS = [int(s) for s in config["finetune"]["seeds"]]
PREDICT = config.get("predict") or {}
SAMPLES = PREDICT.get("samples") or {}


def check_config():
    """Cross-references a schema cannot express, caught before any job runs."""
    if "pretrain" in TASKS:
        raise WorkflowError(
            "'pretrain' is reserved for the pretraining corpus; rename that task"
        )
    for name, spec in MODELS.items():
        if spec["tokenizer"] not in TOKENIZERS:
            raise WorkflowError(
                f"model {name!r} uses tokenizer {spec['tokenizer']!r}, which is not under "
                f"'tokenizers' (have: {', '.join(TOKENIZERS)})"
            )
        if spec["size"] not in MODEL_SIZES[spec["arch"]]:
            raise WorkflowError(
                f"model {name!r}: unknown size {spec['size']!r} for arch {spec['arch']!r}; "
                f"choose one of {', '.join(MODEL_SIZES[spec['arch']])}"
            )
    longest = max(
        [config["pretrain_corpus"]["window"]["length"]]
        + [t["window"]["length"] for t in TASKS.values()]
    )
    for name in MODELS:
        if model_spec(name)["max_seq_len"] < longest:
            raise WorkflowError(
                f"model {name!r}: max_seq_len {model_spec(name)['max_seq_len']} is shorter than the "
                f"longest window ({longest}); raise max_seq_len or shorten the windows"
            )
    for task, spec in TASKS.items():
        unknown = set(task_genomes(task)) - set(GENOMES.index)
        if unknown:
            raise WorkflowError(
                f"task {task!r} names genome(s) not in the sheet: {sorted(unknown)}"
            )
        labels = spec.get("labels")
        found = set(GENOMES.loc[task_genomes(task), "label"])
        if labels and not found <= set(labels):
            raise WorkflowError(
                f"task {task!r}: sheet labels {sorted(found - set(labels))} are missing from the "
                f"task's labels {labels}"
            )
        if len(found) < 2:
            raise WorkflowError(
                f"task {task!r} has a single label {sorted(found)}; it needs two or more"
            )
        try:  # the split itself is cheap: fail now rather than after acquiring every genome
            split_groups(
                GENOMES.loc[task_genomes(task), ["group", "label", "split"]].replace(
                    "", None
                ),
                val_fraction=config["split"]["val_fraction"],
                test_fraction=config["split"]["test_fraction"],
                seed=config["split"]["seed"],
            )
        except ValueError as err:
            raise WorkflowError(f"task {task!r}: {err}") from None
    if SAMPLES:
        for key in ("task", "model", "init", "seed"):
            if key not in PREDICT:
                raise WorkflowError(
                    f"predict: samples are given but predict.{key} is missing"
                )
        if PREDICT["task"] not in TASKS or PREDICT["model"] not in MODELS:
            raise WorkflowError(
                "predict.task / predict.model must name a configured task and model"
            )
        if int(PREDICT["seed"]) not in SEEDS:
            raise WorkflowError(
                f"predict.seed {PREDICT['seed']} is not among finetune.seeds {SEEDS}"
            )
        for sample, source in SAMPLES.items():
            parse_source(source, f"predict sample {sample!r}")


def task_labels(task):
    """Label names in id order: the task's `labels`, else the sheet's labels sorted."""
    return TASKS[task].get("labels") or sorted(
        set(GENOMES.loc[task_genomes(task), "label"])
    )


def task_genomes(task):
    chosen = TASKS[task].get("genomes", "all")
    return list(GENOMES.index) if chosen == "all" else list(chosen)


def alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


wildcard_constraints:
    genome=alternatives(GENOMES.index),
    task=alternatives(TASKS),
    corpus=alternatives(["pretrain", *TASKS]),
    model=alternatives(MODELS),
    tokenizer=alternatives(TOKENIZERS),
    split=alternatives(SPLITS),
    seed=r"\d+",
    sample=alternatives(SAMPLES) if SAMPLES else "(?!)",


# ---- input functions -------------------------------------------------------------------------
def genome_fasta(genome):
    return f"resources/genomes/{genome}.fa.gz"


def local_source(wildcards):
    row = GENOMES.loc[wildcards.genome]
    return [row["source"]] if row["kind"] == "local" else []


def task_genome_files(wildcards):
    names = task_genomes(wildcards.task)
    return [genome_fasta(g) for g in names] + [genome_fasta(g) + ".fai" for g in names]


def pretrain_genomes():
    return list(GENOMES.index[GENOMES["pretrain"]])


def corpus_genomes(corpus):
    return pretrain_genomes() if corpus == "pretrain" else task_genomes(corpus)


def tokens(tokenizer, corpus, splits):
    return {
        f"{s}_{ext}": f"results/tokens/{tokenizer}/{corpus}/{s}.{ext}"
        for s in splits
        for ext in ("bin", "idx", "meta.json")
    }


def finetune_tokens(wildcards):
    return tokens(MODELS[wildcards.model]["tokenizer"], wildcards.task, SPLITS)


def pretrain_tokens(wildcards):
    return tokens(MODELS[wildcards.model]["tokenizer"], "pretrain", CORPUS_SPLITS)


def model_spec(model):
    return {"name": model, "max_seq_len": 1024, **MODELS[model]}


def finetune_params():
    """The fine-tuning settings that define one run (the seed list is not one of them)."""
    return {k: v for k, v in config["finetune"].items() if k != "seeds"}


def run_dir(task, model, init, seed):
    return f"results/finetune/{task}/{model}/{init}/seed{seed}"


def all_runs():
    return [
        os.path.join(run_dir(t, m, i, s), "metrics.json")
        for t in TASKS
        for m in MODELS
        for i in INITS
        for s in SEEDS
    ]


def resources_of(stage, key):
    return config["resources"][stage][key]


SUMMARY = {
    "metrics": "results/summary/metrics.tsv",
    "effect": "results/summary/pretrain_effect.tsv",
    "size_figure": "results/summary/figures/metric_vs_size.png",
    "effect_figure": "results/summary/figures/pretrain_effect.png",
    "pretrain_figure": "results/summary/figures/pretrain_loss.png",
    "finetune_figure": "results/summary/figures/finetune_curves.png",
}


def all_outputs():
    outputs = list(SUMMARY.values())
    outputs += [f"results/windows/{t}/class_counts.tsv" for t in TASKS]
    outputs += [f"results/predict/{s}/records.tsv" for s in SAMPLES]
    return outputs


def predict_input(wildcards):
    source = parse_source(SAMPLES[wildcards.sample])
    if source.kind == "local":
        return source.value
    return f"resources/samples/{wildcards.sample}.fa.gz"


def predict_model(wildcards):
    run = run_dir(PREDICT["task"], PREDICT["model"], PREDICT["init"], PREDICT["seed"])
    return os.path.join(run, "model")


check_config()
