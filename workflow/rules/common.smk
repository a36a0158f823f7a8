# Config, sheets, wildcard constraints and input functions shared by every stage.
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dnalm.fasta import is_gzip, record_lengths
from dnalm.labelled import source_paths
from dnalm.model_sizes import MODEL_SIZES
from dnalm.simulate import parse_simulated_source
from dnalm.sources import parse_source
from dnalm.tokenization import check_tokenizer_spec
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
    if sheet.empty:
        raise WorkflowError(
            f"{path}: no genomes, only a header; add one row per genome"
        )
    if not sheet["pretrain"].any():
        raise WorkflowError(
            f"{path}: no genome feeds pretraining (the pretrain column is false everywhere); "
            "set pretrain to true for at least one genome"
        )
    return sheet.set_index("genome", drop=False)


GENOMES = read_genome_sheet(config["genomes"])
TASKS = config["tasks"]
# A task is a genome task (windows over sheet genomes, `genomes:`/`window:`) or a labelled-
# sequence task (`source:`: CSV/TSV, GenomicBenchmarks, ViraMiner or FASTA with labels).
LABELLED_TASKS = [t for t, spec in TASKS.items() if "source" in spec]
GENOME_TASKS = [t for t in TASKS if t not in LABELLED_TASKS]
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
    # what the schema cannot say about a tokenizer, e.g. kmer stride <= k
    for name, spec in TOKENIZERS.items():
        try:
            check_tokenizer_spec(spec, f"tokenizers: {name!r}")
        except ValueError as err:
            raise WorkflowError(str(err)) from None
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
    for genome, row in GENOMES.iterrows():
        source = row["source"]
        if (
            row["kind"] == "local"
            and not is_rule_output(source)
            and not Path(source).exists()
        ):
            raise WorkflowError(
                f"{config['genomes']}, genome {genome!r}: source file {source} does not exist "
                "(paths are relative to the working directory)"
            )
    # before max_seq_len: a window no genome can hold is the first thing to change
    check_window_fits(
        "pretrain_corpus",
        "pretraining genome",
        pretrain_genomes(),
        config["pretrain_corpus"]["window"]["length"],
        "pretrain_corpus.window.length",
    )
    for task in GENOME_TASKS:
        genomes = GENOMES.loc[GENOMES.index.intersection(task_genomes(task))]
        for label, of_label in genomes.groupby("label"):
            check_window_fits(
                f"task {task!r}",
                f"genome labelled {label!r}",
                list(of_label.index),
                TASKS[task]["window"]["length"],
                f"tasks.{task}.window.length",
            )
    longest = max(
        [config["pretrain_corpus"]["window"]["length"]]
        + [TASKS[t]["window"]["length"] for t in GENOME_TASKS]
        + [TASKS[t]["max_length"] for t in LABELLED_TASKS if "max_length" in TASKS[t]]
    )
    for name in MODELS:
        if model_spec(name)["max_seq_len"] < longest:
            raise WorkflowError(
                f"model {name!r}: max_seq_len {model_spec(name)['max_seq_len']} is shorter than the "
                f"longest window ({longest}); raise max_seq_len or shorten the windows"
            )
    for task in LABELLED_TASKS:
        check_labelled_task(task, TASKS[task])
    for task in GENOME_TASKS:
        spec = TASKS[task]
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
        if labels and set(labels) - found:
            raise WorkflowError(
                f"task {task!r}: label(s) {sorted(set(labels) - found)} of the task's labels "
                f"have no genome in the sheet; remove them from tasks.{task}.labels or add "
                "genomes with them"
            )
        if len(found) < 2:
            raise WorkflowError(
                f"task {task!r} has a single label {sorted(found)}; it needs two or more"
            )
        if task_split_by(task) == "chromosome":
            continue  # needs the records' names: checked by the split_groups job, naming the task
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
            kind = parse_source(source, f"predict sample {sample!r}").kind
            if kind not in ("local", "metagenome"):
                raise WorkflowError(
                    f"predict sample {sample!r}: give a local FASTA path or "
                    f"simulated:metagenome, not a {kind} source; download it first (or add it "
                    "to the genome sheet and predict on resources/genomes/<genome>.fa.gz)"
                )


def longest_record_bound(genome):
    """An upper bound of the genome's longest record, known without acquiring it: a
    simulated genome's total length, a local file's up-to-date .fai, or a plain FASTA's size
    in bytes; None (unknown until acquired) for downloads and compressed files without an
    index."""
    row = GENOMES.loc[genome]
    if row["kind"] == "simulated":
        return parse_simulated_source(row["source"]).length
    path = Path(row["source"])
    if row["kind"] != "local" or not path.exists():
        return None
    fai = Path(f"{path}.fai")
    if fai.exists() and fai.stat().st_mtime >= path.stat().st_mtime:
        return max(record_lengths(path).values(), default=0)
    return None if is_gzip(path) else path.stat().st_size


def check_window_fits(where, what, genomes, length, key):
    """A window longer than every genome of a label (or of the pretraining corpus) gives that
    label no window: fail now, not after acquiring every genome. Genomes of unknown length
    (downloads) make the check pass; their windows job checks them once acquired."""
    bounds = {g: longest_record_bound(g) for g in genomes}
    if not bounds or None in bounds.values():
        return
    longest = max(bounds, key=bounds.get)
    if bounds[longest] < length:
        raise WorkflowError(
            f"{where}: window length {length:,} is longer than every {what} (the longest, "
            f"{longest!r}, has at most {bounds[longest]:,} bp), so it would get no window; set "
            f"{key} to at most {bounds[longest]:,} or add longer genomes"
        )


def task_labels(task):
    """Label names in id order: the task's `labels`, else the sheet's labels sorted (genome
    tasks) or 0, 1 (ViraMiner)."""
    if TASKS[task].get("labels"):
        return TASKS[task]["labels"]
    if task in LABELLED_TASKS:
        return ["0", "1"]  # check_labelled_task allows no `labels` for ViraMiner only
    return sorted(set(GENOMES.loc[task_genomes(task), "label"]))


def task_split_by(task):
    """What a genome task's split draws: the sheet's groups, or its genomes' chromosomes."""
    return TASKS[task].get("split_by", "group")


def split_record_indexes(wildcards):
    """A chromosome split reads record names and lengths from the genomes' .fai; a group split
    reads no genome, so it runs (and fails) before any genome is acquired."""
    if task_split_by(wildcards.task) != "chromosome":
        return []
    return [genome_fasta(g) + ".fai" for g in task_genomes(wildcards.task)]


def split_min_length(wildcards):
    """Records shorter than one window give no window, so a chromosome split leaves them out;
    None for a group split, whose split then never depends on the window."""
    if task_split_by(wildcards.task) != "chromosome":
        return None
    return TASKS[wildcards.task]["window"]["length"]


def task_genomes(task):
    """Sheet genomes of a genome task; a labelled-sequence task has none."""
    if task in LABELLED_TASKS:
        return []
    chosen = TASKS[task].get("genomes", "all")
    return list(GENOMES.index) if chosen == "all" else list(chosen)


def labelled_source_files(task):
    """The files (or GenomicBenchmarks directory) a labelled task reads."""
    return source_paths(TASKS[task]["source"])


def is_rule_output(path):
    """Paths under resources/ are made by a rule (e.g. a rebuilt GenomicBenchmarks dataset)."""
    return Path(os.path.normpath(path)).parts[:1] == ("resources",)


def check_labelled_task(task, spec):
    """What can be checked of a labelled task before reading it: files, labels, groups."""
    source = spec["source"]
    for path in labelled_source_files(task):
        if not is_rule_output(path) and not Path(path).exists():
            raise WorkflowError(
                f"task {task!r}: source file {path} does not exist (paths are relative to the "
                "working directory)"
            )
    if not spec.get("labels") and source["format"] != "viraminer":
        raise WorkflowError(
            f"task {task!r}: a labelled-sequence task needs `labels` (label order = ids; "
            "the second is the positive class), e.g. labels: ['0', '1']"
        )
    groups = source.get("test_groups", []) + source.get("val_groups", [])
    if not groups:
        return
    if source["format"] == "genomic_benchmarks" or (
        source["format"] in ("csv", "tsv") and "group_column" not in source
    ):
        raise WorkflowError(
            f"task {task!r}: test_groups/val_groups need groups; set source.group_column"
        )
    if source["format"] == "viraminer":
        stems = {Path(p).name.split(".")[0] for p in labelled_source_files(task)}
        unknown = sorted(set(groups) - stems)
        if unknown:
            raise WorkflowError(
                f"task {task!r}: test_groups/val_groups {unknown} are not ViraMiner experiments "
                f"(file stems: {', '.join(sorted(stems))})"
            )


def alternatives(names):
    return "|".join(re.escape(str(n)) for n in names)


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return alternatives(names) if names else "(?!)"


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


def genome_ambiguous_bed(genome):
    """The genome's runs of non-ACGT bases (acquire_genome writes them while normalising):
    the windows steps cut windows from them and the .fai, never reading the sequence."""
    return f"resources/genomes/{genome}.ambiguous.bed.gz"


def local_source(wildcards):
    row = GENOMES.loc[wildcards.genome]
    return [row["source"]] if row["kind"] == "local" else []


# acquire: config keys that change what a download source yields; transfer settings (retries,
# timeout, cache folder) are read by the script from the config, so changing them reruns nothing.
SOURCE_URL_KEYS = {
    "url": [],
    "ncbi": ["ncbi_eutils_url"],
    "assembly": ["ncbi_datasets_url"],
    "refseq": ["refseq_viral_url"],
    "ucsc": ["ucsc_url"],
}


def normalise_options():
    """soft_mask, iupac and empty_records when the config has them: passed to
    normalise_fasta as they are."""
    return {
        k: config["acquire"][k]
        for k in ("soft_mask", "iupac", "empty_records")
        if k in config["acquire"]
    }


def source_urls(wildcards):
    kind = GENOMES.loc[wildcards.genome, "kind"]
    return {k: config["acquire"][k] for k in SOURCE_URL_KEYS.get(kind, [])}


def acquire_runtime(wildcards):
    """Minutes: a download (a whole human genome, say) needs far longer than a local file."""
    return 240 if GENOMES.loc[wildcards.genome, "kind"] in SOURCE_URL_KEYS else 30


def ncbi_slots(wildcards):
    """1 for a job that talks to NCBI: with `--resources ncbi=1` (the SLURM profile) one runs at
    a time, so E-utilities' per-IP rate holds across jobs."""
    return int(GENOMES.loc[wildcards.genome, "kind"] in ("ncbi", "assembly", "refseq"))


def benchmark_references(wildcards):
    """The reference FASTA(s) of a dataset to rebuild from coordinates; none to download it."""
    refs = config["acquire"]["genomic_benchmarks_references"].get(wildcards.dataset)
    if refs is None:
        return []
    if not config["acquire"]["genomic_benchmarks_coordinates"]:
        raise WorkflowError(
            f"acquire.genomic_benchmarks_references names {wildcards.dataset!r}, but "
            "acquire.genomic_benchmarks_coordinates (the official coordinate folder) is not set"
        )
    return sorted(set(refs.values())) if isinstance(refs, dict) else [refs]


def benchmark_coordinates(wildcards):
    root = config["acquire"]["genomic_benchmarks_coordinates"]
    return os.path.join(root, wildcards.dataset) if root else ""


def task_genome_files(wildcards):
    names = task_genomes(wildcards.task)
    return (
        [genome_fasta(g) for g in names]
        + [genome_fasta(g) + ".fai" for g in names]
        + [genome_ambiguous_bed(g) for g in names]
    )


def pretrain_genomes():
    return list(GENOMES.index[GENOMES["pretrain"]])


def corpus_genomes(corpus):
    return pretrain_genomes() if corpus == "pretrain" else task_genomes(corpus)


def tokenizer_training_data(wildcards):
    """bpe learns from the pretraining train windows; char and kmer need no data."""
    if TOKENIZERS[wildcards.tokenizer]["kind"] != "bpe":
        return {}
    return {
        "windows": "results/windows/pretrain/train.parquet",
        "genomes": [genome_fasta(g) for g in corpus_genomes("pretrain")],
    }


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


def checkpoint_dir(wc, init):
    """Resumable state of one fine-tuning run: not an output, so a failed job keeps it."""
    return f"results/checkpoints/finetune/{wc.task}/{wc.model}/{init}/seed{wc.seed}"


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
    "audit": "results/summary/audit.tsv",
    "roc_pr_figure": "results/summary/figures/roc_pr.png",
    # rule provenance (aggregate.smk)
    "benchmarks": "results/summary/rule_benchmarks.tsv",
    "benchmarks_figure": "results/summary/figures/rule_benchmarks.png",
    "software": "results/summary/software.tsv",
    "config": "results/summary/config.yaml",
}


def all_benchmarks():
    """The benchmark file of every job the default target runs, except provenance's own (it is
    written after the job ends). Keep in step with the rules' `benchmark:` paths."""
    bench = "results/benchmarks"
    tokenizers = sorted({MODELS[m]["tokenizer"] for m in MODELS})
    genomes = set(pretrain_genomes()) | {
        g for t in GENOME_TASKS for g in task_genomes(t)
    }
    datasets = set()
    for task in LABELLED_TASKS:
        for path in labelled_source_files(task):
            parts = Path(os.path.normpath(path)).parts
            if parts[:2] == ("resources", "genomic_benchmarks") and len(parts) > 2:
                datasets.add(parts[2])
    for dataset in datasets:
        for ref in benchmark_references(SimpleNamespace(dataset=dataset)):
            parts = Path(os.path.normpath(ref)).parts
            if parts[:2] == ("resources", "genomes") and ref.endswith(".fa.gz"):
                genomes.add(parts[2].removesuffix(".fa.gz"))
    files = [f"{bench}/acquire_genome/{g}.tsv" for g in sorted(genomes)]
    files += [f"{bench}/genomic_benchmark/{d}.tsv" for d in sorted(datasets)]
    files += [
        f"{bench}/simulate_sample/{s}.tsv"
        for s in SAMPLES
        if parse_source(SAMPLES[s]).kind != "local"
    ]
    files += [f"{bench}/split_groups/{t}.tsv" for t in GENOME_TASKS]
    files += [f"{bench}/task_windows/{t}.tsv" for t in GENOME_TASKS]
    files += [f"{bench}/labelled_windows/{t}.tsv" for t in LABELLED_TASKS]
    files += [f"{bench}/pretrain_windows/pretrain.tsv"]
    files += [f"{bench}/audit/{t}.tsv" for t in TASKS]
    files += [f"{bench}/build_tokenizer/{k}.tsv" for k in tokenizers]
    files += [
        f"{bench}/tokenize/{k}/{corpus}/{split}.tsv"
        for k in tokenizers
        for corpus, splits in [
            ("pretrain", CORPUS_SPLITS),
            *((t, SPLITS) for t in TASKS),
        ]
        for split in splits
    ]
    files += [f"{bench}/pretrain/{m}.tsv" for m in MODELS]
    files += [
        f"{bench}/{rule}/{t}/{m}/seed{s}.tsv"
        for rule in ("finetune", "scratch")
        for t in TASKS
        for m in MODELS
        for s in SEEDS
    ]
    files += [f"{bench}/aggregate/aggregate.tsv"]
    files += [f"{bench}/predict/{s}.tsv" for s in SAMPLES]
    return files


def audit_gate(wildcards):
    """With audit.max_fraction set, training waits for the audit, so a failed audit stops it."""
    if config["audit"].get("max_fraction") is None:
        return []
    return f"results/audit/{wildcards.task}.tsv"


def all_outputs():
    outputs = list(SUMMARY.values())
    outputs += [f"results/windows/{t}/class_counts.tsv" for t in TASKS]
    outputs += [f"results/audit/{t}.tsv" for t in TASKS]
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
