# predict: any FASTA -> per-window (TSV, BED) and per-record class probabilities.


rule predict:
    input:
        fasta=predict_input,
        model=predict_model,
    output:
        records="results/predict/{sample}/records.tsv",
        windows="results/predict/{sample}/windows.tsv",
        bed="results/predict/{sample}/windows.bed",
    log:
        "logs/predict/{sample}.log",
    benchmark:
        BENCHMARKS["predict"]
    conda:
        "../../envs/dnalm.yaml"
    threads: resources_of("predict", "threads")
    resources:
        mem_mb=resources_of("predict", "mem_mb"),
        runtime=resources_of("predict", "runtime"),
        gpu=resources_of("predict", "gpu"),
    params:
        stride=PREDICT.get("stride"),
        batch_size=lambda wc: PREDICT["batch_size"],
        device=config["device"],
    script:
        "../scripts/predict.py"
