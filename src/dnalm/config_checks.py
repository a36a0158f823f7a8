"""Checks of a config and its genome sheet that a JSON schema cannot express.

The workflow runs them while Snakemake parses it, so a mistake fails before any job runs (and
`snakemake -n` shows it) with a message saying what to change, instead of hours later in the job
that trips over it. They are plain functions of the config (its defaults filled in by the
schema) and the sheet, so the tests call them without starting Snakemake. Only the workflow and
the tests import this module; it imports only dnalm's data modules.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from dnalm.bgzf import compression_level
from dnalm.fasta import is_gzip, record_lengths
from dnalm.hub import HubError, parse_init_from
from dnalm.hyenadna_config import CheckpointError, check_entry, check_entry_settings
from dnalm.labelled import hub_datasets, labelled_downloads, source_paths
from dnalm.model_sizes import MODEL_SIZES
from dnalm.simulate import parse_simulated_source
from dnalm.sources import parse_source
from dnalm.tokenization import check_tokenizer_spec
from dnalm.windows import split_groups

__all__ = [
    "SHEET_COLUMNS",
    "ConfigError",
    "check_config",
    "check_labelled_task",
    "check_window_fits",
    "is_rule_output",
    "labelled_tasks",
    "longest_record_bound",
    "model_inits",
    "pretrain_genomes",
    "pretrained_models",
    "pretraining_needed",
    "published_models",
    "read_genome_sheet",
    "task_genomes",
    "BENCHMARKS",
    "acquired_genomes",
    "baseline_runs",
    "benchmark_files",
    "benchmark_references",
    "finetune_runs",
    "genomic_benchmark_datasets",
    "task_labels",
    "task_split_by",
]

SHEET_COLUMNS = ("genome", "label", "group", "source")


class ConfigError(ValueError):
    """A mistake in the config or the genome sheet; the workflow reports it before any job."""


# ---- what a config says, shared by the checks and the workflow's input functions -------------


def labelled_tasks(config: Mapping[str, Any]) -> list[str]:
    """Tasks that read labelled sequences (`source:`); the others cut windows from genomes."""
    return [t for t, spec in config["tasks"].items() if "source" in spec]


def task_genomes(config: Mapping[str, Any], sheet: pd.DataFrame, task: str) -> list[str]:
    """Sheet genomes of a genome task; a labelled-sequence task has none."""
    spec = config["tasks"][task]
    if "source" in spec:
        return []
    chosen = spec.get("genomes", "all")  # no schema default: labelled tasks must not get one
    return list(sheet.index) if chosen == "all" else list(chosen)


def task_labels(config: Mapping[str, Any], sheet: pd.DataFrame, task: str) -> list[str]:
    """Label names in id order: the task's `labels`, else the sheet's labels sorted (genome
    tasks) or 0, 1 (ViraMiner, the one labelled format that may leave `labels` out)."""
    spec = config["tasks"][task]
    if spec.get("labels"):
        return list(spec["labels"])
    if "source" in spec:
        return ["0", "1"]
    return sorted(set(sheet.loc[task_genomes(config, sheet, task), "label"]))


def task_split_by(spec: Mapping[str, Any]) -> str:
    """What a genome task's split draws: the sheet's groups, or its genomes' chromosomes."""
    return spec.get("split_by", "group")  # no schema default: labelled tasks must not get one


def pretrain_genomes(sheet: pd.DataFrame) -> list[str]:
    return list(sheet.index[sheet["pretrain"]])


def published_models(config: Mapping[str, Any]) -> list[str]:
    """Models with a published checkpoint (`init_from`), which the fetch_checkpoint rule brings."""
    return [m for m, spec in config["models"].items() if "init_from" in spec]


def model_inits(config: Mapping[str, Any], model: str) -> list[str]:
    """The inits a model is trained from (finetune.inits): published only with an init_from."""
    has_checkpoint = "init_from" in config["models"][model]
    return [i for i in config["finetune"]["inits"] if i != "published" or has_checkpoint]


def pretrained_models(config: Mapping[str, Any]) -> list[str]:
    """Models that dnalm pretrains: those with a `pretrained` run."""
    return [m for m in config["models"] if "pretrained" in model_inits(config, m)]


def pretraining_needed(config: Mapping[str, Any]) -> bool:
    """Whether the pretraining corpus is cut: some model is pretrained, or a bpe tokenizer
    learns its merges from the corpus' train windows."""
    tokenizers = {spec["tokenizer"] for spec in config["models"].values()}
    bpe = any(config["tokenizers"][t]["kind"] == "bpe" for t in tokenizers)
    return bpe or bool(pretrained_models(config))


def is_rule_output(path: str) -> bool:
    """Paths under resources/ are made by a rule (e.g. a rebuilt GenomicBenchmarks dataset), so
    they need not exist yet."""
    return Path(os.path.normpath(path)).parts[:1] == ("resources",)


# ---- the genome sheet -------------------------------------------------------------------------


def read_genome_sheet(path: str, validate: Callable[[pd.DataFrame], object]) -> pd.DataFrame:
    """The genome sheet, checked, indexed by genome, with `pretrain` as booleans and a `kind`
    column (the source type).

    `validate` checks the rows against the sheet schema and fills in its defaults for empty or
    absent optional columns (snakemake.utils.validate does both), so those defaults live in the
    schema alone.
    """
    if not Path(path).exists():
        raise ConfigError(f"genome sheet {path} does not exist (config key: genomes)")
    sheet = pd.read_csv(path, sep="\t", dtype=str, comment="#")
    missing = set(SHEET_COLUMNS) - set(sheet.columns)
    if missing:
        raise ConfigError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; a genome sheet needs "
            "genome, label, group, source (and optionally checksum, pretrain, split)"
        )
    if sheet.empty:
        raise ConfigError(f"{path}: no genomes, only a header; add one row per genome")
    # an empty required cell is '' so that the schema says it is too short, not absent
    sheet[list(SHEET_COLUMNS)] = sheet[list(SHEET_COLUMNS)].fillna("")
    if "pretrain" in sheet:
        sheet["pretrain"] = sheet["pretrain"].str.lower()
    validate(sheet)
    sheet = sheet.fillna("")
    sheet["pretrain"] = sheet["pretrain"].isin(["true", "yes", "1"])
    dupes = sheet.loc[sheet["genome"].duplicated(), "genome"].tolist()
    if dupes:
        raise ConfigError(
            f"{path}: duplicate genome name(s) {', '.join(dupes)}; names must be unique"
        )
    kinds = []
    for genome, source in zip(sheet["genome"], sheet["source"], strict=True):
        try:
            kinds.append(parse_source(source, f"{path}, genome {genome!r}").kind)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    sheet["kind"] = kinds
    if not sheet["pretrain"].any():
        raise ConfigError(
            f"{path}: no genome feeds pretraining (the pretrain column is false everywhere); "
            "set pretrain to true for at least one genome"
        )
    return sheet.set_index("genome", drop=False)


# ---- window lengths known before acquiring ----------------------------------------------------


def longest_record_bound(row: Mapping[str, Any]) -> int | None:
    """An upper bound of a sheet genome's longest record, known without acquiring it: a
    simulated genome's total length, a local file's up-to-date .fai, or a plain FASTA's size in
    bytes; None (unknown until acquired) for downloads and compressed files without an index."""
    if row["kind"] == "simulated":
        return parse_simulated_source(row["source"]).length
    path = Path(row["source"])
    if row["kind"] != "local" or not path.exists():
        return None
    fai = Path(f"{path}.fai")
    if fai.exists() and fai.stat().st_mtime >= path.stat().st_mtime:
        return max(record_lengths(path).values(), default=0)
    return None if is_gzip(path) else path.stat().st_size


def check_window_fits(
    sheet: pd.DataFrame, where: str, what: str, genomes: Iterable[str], length: int, key: str
) -> None:
    """A window longer than every genome of a label (or of the pretraining corpus) gives that
    label no window: fail now, not after acquiring every genome. Genomes of unknown length
    (downloads) make the check pass; their windows job checks them once acquired."""
    bounds = {g: longest_record_bound(sheet.loc[g]) for g in genomes}
    if not bounds or None in bounds.values():
        return
    longest = max(bounds, key=bounds.get)
    if bounds[longest] < length:
        raise ConfigError(
            f"{where}: window length {length:,} is longer than every {what} (the longest, "
            f"{longest!r}, has at most {bounds[longest]:,} bp), so it would get no window; set "
            f"{key} to at most {bounds[longest]:,} or add longer genomes"
        )


# ---- the config -------------------------------------------------------------------------------


def check_config(config: Mapping[str, Any], sheet: pd.DataFrame) -> None:
    """Every cross-reference of the config and the sheet, in the order a user should fix them:
    names, tokenizers and models, local files, window lengths, tasks, prediction."""
    if "pretrain" in config["tasks"]:
        raise ConfigError("'pretrain' is reserved for the pretraining corpus; rename that task")
    check_acquire(config)
    check_models(config)
    check_inits(config)
    check_local_sources(config, sheet)
    check_windows(config, sheet)
    labelled = labelled_tasks(config)
    for task in labelled:
        check_labelled_task(task, config["tasks"][task])
    for task in config["tasks"]:
        if task not in labelled:
            check_genome_task(config, sheet, task)
    check_predict(config)


def check_acquire(config: Mapping[str, Any]) -> None:
    """A compression level the chosen library has (the schema only knows 0-9)."""
    acquire = config["acquire"]
    try:
        compression_level(acquire["compression"], acquire["compress_level"])
    except ValueError as err:
        raise ConfigError(f"acquire: {err}") from None


def check_models(config: Mapping[str, Any]) -> None:
    """Tokenizer entries (what the schema cannot say, e.g. kmer stride <= k), and each model's
    tokenizer and named size."""
    tokenizers = config["tokenizers"]
    for name, spec in tokenizers.items():
        try:
            check_tokenizer_spec(spec, f"tokenizers: {name!r}")
        except ValueError as err:
            raise ConfigError(str(err)) from None
    for name, spec in config["models"].items():
        if spec["tokenizer"] not in tokenizers:
            raise ConfigError(
                f"model {name!r} uses tokenizer {spec['tokenizer']!r}, which is not under "
                f"'tokenizers' (have: {', '.join(tokenizers)})"
            )
        if "init_from" in spec:
            check_published_model(name, spec, tokenizers[spec["tokenizer"]])
        elif spec.get("revision"):
            raise ConfigError(
                f"model {name!r}: revision is a revision of init_from; give init_from too, or "
                "drop revision"
            )
        elif spec["size"] not in MODEL_SIZES[spec["arch"]]:
            raise ConfigError(
                f"model {name!r}: unknown size {spec['size']!r} for arch {spec['arch']!r}; "
                f"choose one of {', '.join(MODEL_SIZES[spec['arch']])}"
            )


def check_published_model(name: str, spec: Mapping[str, Any], tokenizer: Mapping[str, Any]) -> None:
    """A model with `init_from`: HyenaDNA with a char tokenizer; a Hub id (checked by its fetch
    job, never at parse time) or an existing checkpoint directory, which is read now (its
    config.json, as JSON) and must fit the entry."""
    spec = {"name": name, **spec}
    where = f"model {name!r} (init_from {spec['init_from']})"
    try:
        check_entry_settings(spec, tokenizer, where)
        kind, value = parse_init_from(spec["init_from"])
        if kind == "local" and spec.get("revision"):
            raise ConfigError(
                f"{where}: revision applies to a Hub id; a local directory is used as it is"
            )
        if kind == "local":
            check_entry(Path(value).expanduser(), spec, tokenizer, where)
    except (HubError, CheckpointError) as err:
        raise ConfigError(str(err)) from None


def check_inits(config: Mapping[str, Any]) -> None:
    """`published` runs need a model with a published checkpoint."""
    inits = config["finetune"]["inits"]
    if "published" in inits and not published_models(config):
        raise ConfigError(
            "finetune.inits has published, but no model has init_from; give a model init_from "
            "(a Hub id such as LongSafari/hyenadna-tiny-1k-seqlen-hf, or a checkpoint "
            "directory), or drop published from finetune.inits"
        )


def check_local_sources(config: Mapping[str, Any], sheet: pd.DataFrame) -> None:
    """A sheet genome read from a local file that is missing (paths are relative to the
    working directory; a path under resources/ is made by a rule)."""
    for genome, row in sheet.iterrows():
        source = row["source"]
        if row["kind"] == "local" and not is_rule_output(source) and not Path(source).exists():
            raise ConfigError(
                f"{config['genomes']}, genome {genome!r}: source file {source} does not exist "
                "(paths are relative to the working directory)"
            )


def check_windows(config: Mapping[str, Any], sheet: pd.DataFrame) -> None:
    """Every window must fit some genome of each label, and every model's max_seq_len."""
    tasks = config["tasks"]
    labelled = labelled_tasks(config)
    genome_tasks = [t for t in tasks if t not in labelled]
    corpus = pretraining_needed(config)  # else the corpus' windows are never cut
    # before max_seq_len: a window no genome can hold is the first thing to change
    if corpus:
        check_window_fits(
            sheet,
            "pretrain_corpus",
            "pretraining genome",
            pretrain_genomes(sheet),
            config["pretrain_corpus"]["window"]["length"],
            "pretrain_corpus.window.length",
        )
    for task in genome_tasks:
        genomes = sheet.loc[sheet.index.intersection(task_genomes(config, sheet, task))]
        for label, of_label in genomes.groupby("label"):
            check_window_fits(
                sheet,
                f"task {task!r}",
                f"genome labelled {label!r}",
                list(of_label.index),
                tasks[task]["window"]["length"],
                f"tasks.{task}.window.length",
            )
    windows = [config["pretrain_corpus"]["window"]["length"]] if corpus else []
    windows += [tasks[t]["window"]["length"] for t in genome_tasks]
    windows += [tasks[t]["max_length"] for t in labelled if "max_length" in tasks[t]]
    longest = max(windows, default=0)
    for name, spec in config["models"].items():
        if spec["max_seq_len"] < longest:
            raise ConfigError(
                f"model {name!r}: max_seq_len {spec['max_seq_len']} is shorter than the "
                f"longest window ({longest}); raise max_seq_len or shorten the windows"
            )


def check_labelled_task(task: str, spec: Mapping[str, Any]) -> None:
    """What can be checked of a labelled task before reading it: files, labels, groups."""
    source = spec["source"]
    try:
        paths = source_paths(source)
    except ValueError as err:
        raise ConfigError(f"task {task!r}: {err}") from None
    for path in paths:
        if not is_rule_output(path) and not Path(path).exists():
            raise ConfigError(
                f"task {task!r}: source file {path} does not exist (paths are relative to the "
                "working directory)"
            )
    if not spec.get("labels") and source["format"] != "viraminer":
        raise ConfigError(
            f"task {task!r}: a labelled-sequence task needs `labels` (label order = ids; "
            "the second is the positive class), e.g. labels: ['0', '1']"
        )
    groups = source.get("test_groups", []) + source.get("val_groups", [])
    if not groups:
        return
    if source["format"] == "genomic_benchmarks" or (
        source["format"] in ("csv", "tsv", "hf_dataset") and "group_column" not in source
    ):
        raise ConfigError(
            f"task {task!r}: test_groups/val_groups need groups; set source.group_column"
        )
    if source["format"] == "viraminer":
        stems = {Path(p).name.split(".")[0] for p in paths}
        unknown = sorted(set(groups) - stems)
        if unknown:
            raise ConfigError(
                f"task {task!r}: test_groups/val_groups {unknown} are not ViraMiner experiments "
                f"(file stems: {', '.join(sorted(stems))})"
            )


def check_genome_task(config: Mapping[str, Any], sheet: pd.DataFrame, task: str) -> None:
    """The task's genomes are in the sheet, its labels match theirs, and its groups split
    (the split is cheap: fail now rather than after acquiring every genome)."""
    spec = config["tasks"][task]
    genomes = task_genomes(config, sheet, task)
    unknown = set(genomes) - set(sheet.index)
    if unknown:
        raise ConfigError(f"task {task!r} names genome(s) not in the sheet: {sorted(unknown)}")
    labels = spec.get("labels")
    found = set(sheet.loc[genomes, "label"])
    if labels and not found <= set(labels):
        raise ConfigError(
            f"task {task!r}: sheet labels {sorted(found - set(labels))} are missing from the "
            f"task's labels {labels}"
        )
    if labels and set(labels) - found:
        raise ConfigError(
            f"task {task!r}: label(s) {sorted(set(labels) - found)} of the task's labels "
            f"have no genome in the sheet; remove them from tasks.{task}.labels or add "
            "genomes with them"
        )
    if len(found) < 2:
        raise ConfigError(f"task {task!r} has a single label {sorted(found)}; it needs two or more")
    if task_split_by(spec) == "chromosome":
        return  # needs the records' names: checked by the split_groups job, naming the task
    try:
        split_groups(
            sheet.loc[genomes, ["group", "label", "split"]].replace("", None),
            val_fraction=config["split"]["val_fraction"],
            test_fraction=config["split"]["test_fraction"],
            seed=config["split"]["seed"],
        )
    except ValueError as err:
        raise ConfigError(f"task {task!r}: {err}") from None


def check_predict(config: Mapping[str, Any]) -> None:
    """Samples to classify need a trained run to classify them with, and a file to read."""
    predict = config.get("predict", {})
    samples = predict.get("samples", {})
    if not samples:
        return
    for key in ("task", "model", "init", "seed"):
        if key not in predict:
            raise ConfigError(f"predict: samples are given but predict.{key} is missing")
    if predict["task"] not in config["tasks"] or predict["model"] not in config["models"]:
        raise ConfigError("predict.task / predict.model must name a configured task and model")
    seeds = [int(s) for s in config["finetune"]["seeds"]]
    if int(predict["seed"]) not in seeds:
        raise ConfigError(f"predict.seed {predict['seed']} is not among finetune.seeds {seeds}")
    inits = model_inits(config, predict["model"])
    if predict["init"] not in inits:
        raise ConfigError(
            f"predict.init {predict['init']!r}: model {predict['model']!r} has no such run "
            f"(its inits: {', '.join(inits)}); choose one of them"
            + (" or give the model init_from" if predict["init"] == "published" else "")
        )
    for sample, source in samples.items():
        try:
            kind = parse_source(source, f"predict sample {sample!r}").kind
        except ValueError as err:
            raise ConfigError(str(err)) from None
        if kind not in ("local", "metagenome"):
            raise ConfigError(
                f"predict sample {sample!r}: give a local FASTA path or "
                f"simulated:metagenome, not a {kind} source; download it first (or add it "
                "to the genome sheet and predict on resources/genomes/<genome>.fa.gz)"
            )


def benchmark_references(config: Mapping[str, Any], dataset: str) -> list[str]:
    """The reference FASTA(s) of a GenomicBenchmarks dataset to rebuild from the official
    coordinates; none when it is downloaded as the published archive."""
    refs = config["acquire"]["genomic_benchmarks_references"].get(dataset)
    if refs is None:
        return []
    if not config["acquire"]["genomic_benchmarks_coordinates"]:
        raise ConfigError(
            f"acquire.genomic_benchmarks_references names {dataset!r}, but "
            "acquire.genomic_benchmarks_coordinates (the official coordinate folder) is not set"
        )
    return sorted(set(refs.values())) if isinstance(refs, dict) else [refs]


def genomic_benchmark_datasets(config: Mapping[str, Any]) -> list[str]:
    """Datasets the labelled tasks read from resources/genomic_benchmarks/ (a rule makes them)."""
    datasets = set()
    for spec in config["tasks"].values():
        for path in source_paths(spec["source"]) if "source" in spec else []:
            parts = Path(os.path.normpath(path)).parts
            if parts[:2] == ("resources", "genomic_benchmarks") and len(parts) > 2:
                datasets.add(parts[2])
    return sorted(datasets)


def acquired_genomes(config: Mapping[str, Any], sheet: pd.DataFrame) -> list[str]:
    """Every sheet genome the default target acquires: pretraining, task and reference genomes."""
    genomes = set(pretrain_genomes(sheet)) if pretraining_needed(config) else set()
    for task, spec in config["tasks"].items():
        if "source" not in spec:
            genomes.update(task_genomes(config, sheet, task))
    for dataset in genomic_benchmark_datasets(config):
        for ref in benchmark_references(config, dataset):
            parts = Path(os.path.normpath(ref)).parts
            if parts[:2] == ("resources", "genomes") and ref.endswith(".fa.gz"):
                genomes.add(parts[2].removesuffix(".fa.gz"))
    return sorted(genomes)


# ---- the runs and benchmark files of the default target ---------------------------------------

SPLITS = ["train", "val", "test"]
CORPUS_SPLITS = ["train", "val"]
# Every rule's `benchmark:`, which benchmark_files collects for provenance (the rule is the
# folder under results/benchmarks/); provenance has none: it would be written after that job.
BENCHMARKS = {
    name: f"results/benchmarks/{name}/{wildcards}.tsv"
    for name, wildcards in {
        "acquire_genome": "{genome}",
        "download_labelled": "{digest}/{name}",
        "fetch_checkpoint": "{model}",
        "fetch_dataset": "{hub_dataset}",
        "genomic_benchmark": "{dataset}",
        "simulate_sample": "{sample}",
        "split_groups": "{task}",
        "task_windows": "{task}",
        "labelled_windows": "{task}",
        "pretrain_windows": "pretrain",
        "audit": "{task}",
        "build_tokenizer": "{tokenizer}",
        "tokenize": "{tokenizer}/{corpus}/{split}",
        "pretrain": "{model}",
        "finetune": "{task}/{model}/{init}/seed{seed}",
        "baseline": "{task}/{baseline}/seed{seed}",
        "aggregate": "aggregate",
        "predict": "{sample}",
    }.items()
}


def expand(pattern: str, **values: str | Iterable[Any]) -> list[str]:
    """Snakemake's `expand`: `pattern` filled with every combination (a string is one value)."""
    lists = [[v] if isinstance(v, str) else list(v) for v in values.values()]
    return [pattern.format(**dict(zip(values, c, strict=True))) for c in itertools.product(*lists)]


def finetune_runs(config: Mapping[str, Any], path: str) -> list[str]:
    """`path` for every fine-tuning run: task x model x the model's inits x seed."""
    seeds = [int(s) for s in config["finetune"]["seeds"]]
    return [
        path.format(task=t, model=m, init=i, seed=s)
        for t in config["tasks"]
        for m in config["models"]
        for i in model_inits(config, m)
        for s in seeds
    ]


def baseline_runs(config: Mapping[str, Any], path: str) -> list[str]:
    """`path` for every task's baselines (tasks.<task>.baselines), one run per seed."""
    tasks, seeds = config["tasks"], [int(s) for s in config["finetune"]["seeds"]]
    return [
        path.format(task=t, baseline=b, seed=s)
        for t in tasks
        for b in tasks[t]["baselines"]
        for s in seeds
    ]


def benchmark_files(config: Mapping[str, Any], sheet: pd.DataFrame) -> list[str]:
    """The benchmark file of every job the default target runs, but provenance's own."""
    b, tasks, models = BENCHMARKS, config["tasks"], config["models"]
    labelled = labelled_tasks(config)
    genome_tasks = [t for t in tasks if t not in labelled]
    tokenizers = sorted({models[m]["tokenizer"] for m in models})
    pretrained = pretrained_models(config)
    samples = config.get("predict", {}).get("samples", {})
    return [
        *expand(b["acquire_genome"], genome=acquired_genomes(config, sheet)),
        *(
            b["download_labelled"].format(digest=Path(p).parent.name, name=Path(p).name)
            for p in labelled_downloads(tasks)
        ),
        *expand(b["fetch_checkpoint"], model=published_models(config)),
        *expand(b["fetch_dataset"], hub_dataset=[Path(d).name for d in hub_datasets(tasks)]),
        *expand(b["genomic_benchmark"], dataset=genomic_benchmark_datasets(config)),
        *expand(
            b["simulate_sample"],
            sample=[s for s in samples if parse_source(samples[s]).kind != "local"],
        ),
        *expand(b["split_groups"], task=genome_tasks),
        *expand(b["task_windows"], task=genome_tasks),
        *expand(b["labelled_windows"], task=labelled),
        *([b["pretrain_windows"]] if pretraining_needed(config) else []),
        *expand(b["audit"], task=tasks),
        *expand(b["build_tokenizer"], tokenizer=tokenizers),
        *expand(
            b["tokenize"],
            tokenizer=sorted({models[m]["tokenizer"] for m in pretrained}),
            corpus="pretrain",
            split=CORPUS_SPLITS,
        ),
        *expand(b["tokenize"], tokenizer=tokenizers, corpus=tasks, split=SPLITS),
        *expand(b["pretrain"], model=pretrained),
        *finetune_runs(config, b["finetune"]),
        *baseline_runs(config, b["baseline"]),
        b["aggregate"],
        *expand(b["predict"], sample=samples),
    ]
