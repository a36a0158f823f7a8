# windows: groups (or chromosomes, split_by) -> splits per genome task; labelled fixed-length
# windows; labelled-sequence tasks' tables (sequences inline); the pretraining corpus.


rule split_groups:
    input:
        indexes=lambda wc: [f"{path}.fai" for path in split_genomes(wc).values()],
    output:
        "results/splits/{task}.tsv",
    log:
        "logs/split_groups/{task}.log",
    benchmark:
        BENCHMARKS["split_groups"]
    wildcard_constraints:
        task=one_of(GENOME_TASKS),
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        sheet=lambda wc: GENOMES.loc[
            task_genomes(wc.task), ["genome", "label", "group", "split"]
        ].to_dict("records"),
        split=config["split"],
        split_by=lambda wc: config_checks.task_split_by(TASKS[wc.task]),
        min_length=split_min_length,
        genomes=split_genomes,
    script:
        "../scripts/split_groups.py"


rule task_windows:
    input:
        splits="results/splits/{task}.tsv",
        genomes=task_genome_files,
    output:
        **{s: f"results/windows/{{task}}/{s}.parquet" for s in SPLITS},
        counts=report(
            "results/windows/{task}/class_counts.tsv",
            caption="../report/class_counts.rst",
            category="1. Data",
            labels={"task": "{task}", "table": "class counts"},
        ),
    log:
        "logs/task_windows/{task}.log",
    benchmark:
        BENCHMARKS["task_windows"]
    wildcard_constraints:
        task=one_of(GENOME_TASKS),
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task=lambda wc: TASKS[wc.task],
        labels=lambda wc: task_labels(wc.task),
        seed=config["split"]["seed"],
        genomes=task_fastas,
    script:
        "../scripts/task_windows.py"


rule labelled_windows:
    input:
        lambda wc: source_paths(TASKS[wc.task]["source"]),
    output:
        **{s: f"results/windows/{{task}}/{s}.parquet" for s in SPLITS},
        counts=report(
            "results/windows/{task}/class_counts.tsv",
            caption="../report/class_counts.rst",
            category="1. Data",
            labels={"task": "{task}", "table": "class counts"},
        ),
    log:
        "logs/labelled_windows/{task}.log",
    benchmark:
        BENCHMARKS["labelled_windows"]
    wildcard_constraints:
        task=one_of(LABELLED_TASKS),
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        task=lambda wc: TASKS[wc.task],
        labels=lambda wc: task_labels(wc.task),
        split=config["split"],
        audit=config["audit"],  # split_by: similarity links sequences by the audit's measure
        # the longest sequence must fit every model unless max_length cuts it (then this is
        # None, and changing the models never reruns this step)
        max_seq_len=lambda wc: (
            None
            if "max_length" in TASKS[wc.task]
            else min(MODELS[m]["max_seq_len"] for m in MODELS)
        ),
    script:
        "../scripts/labelled_windows.py"


rule pretrain_windows:
    input:
        genomes=list(genome_paths(pretrain_genomes()).values()),
        ambiguous=[genome_ambiguous_bed(g) for g in pretrain_genomes()],
        splits=expand("results/splits/{task}.tsv", task=GENOME_TASKS),
    output:
        train="results/windows/pretrain/train.parquet",
        val="results/windows/pretrain/val.parquet",
        corpus=report(
            "results/windows/pretrain/corpus.tsv",
            caption="../report/corpus.rst",
            category="1. Data",
            labels={"task": "pretraining", "table": "corpus"},
        ),
    log:
        "logs/pretrain_windows/pretrain.log",
    benchmark:
        BENCHMARKS["pretrain_windows"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        genomes=genome_paths(pretrain_genomes()),
        splits={t: f"results/splits/{t}.tsv" for t in GENOME_TASKS},
        corpus=config["pretrain_corpus"],
        seed=config["split"]["seed"],
    script:
        "../scripts/pretrain_windows.py"
