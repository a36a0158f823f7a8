# Config, sheets, wildcard constraints and input functions shared by every stage. The checks of
# the config and the sheet live in dnalm.config_checks; they run here, while Snakemake parses.
import os
import re
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from dnalm import config_checks
from dnalm.config_checks import BENCHMARKS, CORPUS_SPLITS, SPLITS, ConfigError
from dnalm.hub import CHECKPOINT_PATTERNS, parse_init_from
from dnalm.labelled import hub_datasets, labelled_downloads, source_paths
from dnalm.sources import SOURCE_URL_KEYS, parse_source


def at_parse_time(check, *args):
    """A config check's mistake, reported as Snakemake reports its own: before any job runs."""
    try:
        return check(*args)
    except ConfigError as err:
        raise WorkflowError(str(err)) from None


validate(config, schema="../schemas/config.schema.yaml")
GENOMES = at_parse_time(
    config_checks.read_genome_sheet,
    config["genomes"],
    lambda sheet: validate(sheet, schema="../schemas/genomes.schema.yaml"),
)
TASKS = config["tasks"]
# A task is a genome task (windows over sheet genomes, `genomes:`/`window:`) or a labelled-
# sequence task (`source:`: CSV/TSV, GenomicBenchmarks, ViraMiner or FASTA with labels).
LABELLED_TASKS = config_checks.labelled_tasks(config)
# labelled-task files named by URL: path under resources/downloads/labelled -> (url, sha256)
LABELLED_DOWNLOADS = labelled_downloads(config["tasks"])
GENOME_TASKS = [t for t in TASKS if t not in LABELLED_TASKS]
MODELS = config["models"]
TOKENIZERS = config["tokenizers"]
PREDICT = config.get("predict", {})
SAMPLES = PREDICT.get("samples", {})
at_parse_time(config_checks.check_config, config, GENOMES)
# How a classifier's weights start (finetune.inits): the published checkpoint, dnalm's
# pretraining or random weights. The one list of inits: the finetune rule's {init} wildcard, the
# runs aggregated and their benchmarks follow it; a model has a published run only if it has an
# init_from (model_inits).
INITS = list(config["finetune"]["inits"])
# models with a published checkpoint (init_from), fetched by fetch_checkpoint; models pretrained
PUBLISHED = config_checks.published_models(config)
PRETRAINED = config_checks.pretrained_models(config)
# Hub datasets of labelled tasks: resources/hub_datasets/<dir> -> repo, revision, file patterns
HUB_DATASETS = hub_datasets(config["tasks"])


def task_labels(task):
    return config_checks.task_labels(config, GENOMES, task)


def split_genomes(wildcards):
    """{genome: FASTA} whose .fai a chromosome split reads; none for a group split, which so
    runs (and fails) before any genome is acquired."""
    if config_checks.task_split_by(TASKS[wildcards.task]) != "chromosome":
        return {}
    return genome_paths(task_genomes(wildcards.task))


def split_min_length(wildcards):
    """Records shorter than one window give no window, so a chromosome split leaves them out;
    None for a group split, whose split then never depends on the window."""
    if config_checks.task_split_by(TASKS[wildcards.task]) != "chromosome":
        return None
    return TASKS[wildcards.task]["window"]["length"]


def task_genomes(task):
    return config_checks.task_genomes(config, GENOMES, task)


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(re.escape(str(n)) for n in names) or "(?!)"


def model_inits(model):
    return config_checks.model_inits(config, model)


wildcard_constraints:
    genome=one_of(GENOMES.index),
    task=one_of(TASKS),
    corpus=one_of(["pretrain", *TASKS]),
    model=one_of(MODELS),
    tokenizer=one_of(TOKENIZERS),
    split=one_of(SPLITS),
    init=one_of(INITS),
    seed=r"\d+",
    hub_dataset=one_of(Path(d).name for d in HUB_DATASETS),
    baseline="kmer_lr|cnn",
    sample=one_of(SAMPLES),


# ---- input functions -------------------------------------------------------------------------
def genome_fasta(genome):
    return f"resources/genomes/{genome}.fa.gz"


def genome_ambiguous_bed(genome):
    """The genome's runs of non-ACGT bases (acquire_genome writes them while normalising):
    the windows steps cut windows from them and the .fai, never reading the sequence."""
    return f"resources/genomes/{genome}.ambiguous.bed.gz"


def genome_paths(genomes):
    """{genome: FASTA}: a script's param, so that none parses genome names from file names."""
    return {g: genome_fasta(g) for g in genomes}


def local_source(wildcards):
    row = GENOMES.loc[wildcards.genome]
    return [row["source"]] if row["kind"] == "local" else []


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
    return at_parse_time(config_checks.benchmark_references, config, wildcards.dataset)


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


def task_fastas(wildcards):
    return genome_paths(task_genomes(wildcards.task))


def pretrain_genomes():
    return config_checks.pretrain_genomes(GENOMES)


def corpus_fastas(wildcards):
    """{genome: FASTA} of a corpus: the pretraining genomes or a task's."""
    if wildcards.corpus == "pretrain":
        return genome_paths(pretrain_genomes())
    return genome_paths(task_genomes(wildcards.corpus))


def tokenizer_training_genomes(wildcards):
    """bpe learns from the pretraining train windows; char and kmer need no data."""
    if TOKENIZERS[wildcards.tokenizer]["kind"] != "bpe":
        return {}
    return genome_paths(pretrain_genomes())


def tokenizer_training_data(wildcards):
    genomes = list(tokenizer_training_genomes(wildcards).values())
    windows = "results/windows/pretrain/train.parquet"
    return {"windows": windows, "genomes": genomes} if genomes else {}


def model_tokenizer(wildcards):
    return f"results/tokenizers/{MODELS[wildcards.model]['tokenizer']}/tokenizer.json"


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


def pretrained_weights(wildcards):
    """The pretraining weights a run starts from; none for a run from random weights."""
    if wildcards.init != "pretrained":
        return []
    return f"results/pretrain/{wildcards.model}/model.safetensors"


def published_dir(model):
    return f"resources/checkpoints/{model}"


def published_checkpoint(wildcards):
    """A model's fetched init_from checkpoint: the weights of its published runs and the
    architecture of all its runs and of its pretraining; none without init_from."""
    return published_dir(wildcards.model) if wildcards.model in PUBLISHED else []


def init_from_files(wildcards):
    """The files of a local init_from directory (a change to them refetches it); none for a
    Hub id, whose files a job downloads."""
    kind, value = parse_init_from(MODELS[wildcards.model]["init_from"])
    if kind == "hub":
        return []
    root = Path(value).expanduser()
    return sorted(
        str(p)
        for pattern in CHECKPOINT_PATTERNS
        for p in root.glob(pattern)
        if p.is_file()
    )


def model_spec(model):
    return {"name": model, **MODELS[model]}


def model_resources(stage, key):
    """One resource of a model's jobs: the model entry's resources.<stage> over the stage's."""

    def of(wildcards):
        own = MODELS[wildcards.model].get("resources", {}).get(stage, {})
        return own.get(key, config["resources"][stage][key])

    return of


def run_dir(task, model, init, seed):
    return f"results/finetune/{task}/{model}/{init}/seed{seed}"


def checkpoint_dir(wc):
    """Resumable state of one fine-tuning run: not an output, so a failed job keeps it."""
    return f"results/checkpoints/finetune/{wc.task}/{wc.model}/{wc.init}/seed{wc.seed}"


def all_runs(
    path=os.path.join(run_dir("{task}", "{model}", "{init}", "{seed}"), "metrics.json")
):
    """Every fine-tuning run: task x model x the model's inits x seed."""
    return config_checks.finetune_runs(config, path)


def all_baselines(path="results/baselines/{task}/{baseline}/seed{seed}/metrics.json"):
    """Every task's baselines (tasks.<task>.baselines), one run per seed."""
    return config_checks.baseline_runs(config, path)


def resources_of(stage, key):
    return config["resources"][stage][key]


def all_benchmarks():
    """The benchmark file of every job the default target runs, but provenance's own."""
    return at_parse_time(config_checks.benchmark_files, config, GENOMES)


def audit_gate(wildcards):
    """With audit.max_fraction set, training waits for the audit, so a failed audit stops it."""
    if config["audit"]["max_fraction"] is None:
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
