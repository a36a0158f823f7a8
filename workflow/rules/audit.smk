# audit: how many test windows are near-copies of a training window, a leak the groups missed.


rule audit:
    input:
        train="results/windows/{task}/train.parquet",
        test="results/windows/{task}/test.parquet",
        genomes=task_genome_files,
    output:
        summary=report(
            "results/audit/{task}.tsv",
            caption="../report/audit.rst",
            category="1. Data",
            labels={"task": "{task}", "table": "near-duplicate audit"},
        ),
        windows="results/audit/{task}.windows.tsv.gz",
    log:
        "logs/audit/{task}.log",
    benchmark:
        BENCHMARKS["audit"]
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        audit=config["audit"],
        genomes=task_fastas,
    script:
        "../scripts/audit.py"
