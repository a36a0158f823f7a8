# windows: labelled fixed-length windows per task, split by group; the pretraining corpus.


rule task_windows:
    input:
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
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        sheet=lambda wc: GENOMES.loc[
            task_genomes(wc.task), ["genome", "label", "group", "split"]
        ].to_dict("records"),
        task=lambda wc: TASKS[wc.task],
        split=config["split"],
    script:
        "../scripts/task_windows.py"


rule pretrain_windows:
    input:
        genomes=lambda wc: [genome_fasta(g) for g in pretrain_genomes()],
        tasks=expand("results/windows/{task}/{split}.parquet", task=TASKS, split=SPLITS),
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
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        genomes=pretrain_genomes(),
        corpus=config["pretrain_corpus"],
    script:
        "../scripts/pretrain_windows.py"
