# pretrain: next-token language modelling for every model of the config.
# With resources.gpu > 1 the job runs under torchrun, one DDP rank per GPU, the batch size
# being the global batch (src/dnalm/jobs.py).


rule pretrain:
    input:
        unpack(pretrain_tokens),
        tokenizer=model_tokenizer,
    output:
        config="results/pretrain/{model}/config.json",
        weights="results/pretrain/{model}/model.safetensors",
        curve="results/pretrain/{model}/curve.tsv",
        summary="results/pretrain/{model}/summary.json",
    log:
        "logs/pretrain/{model}.log",
    benchmark:
        BENCHMARKS["pretrain"]
    conda:
        "../../envs/dnalm.yaml"
    threads: resources_of("pretrain", "threads")
    resources:
        mem_mb=resources_of("pretrain", "mem_mb"),
        runtime=resources_of("pretrain", "runtime"),
        gpu=resources_of("pretrain", "gpu"),
    params:
        model=lambda wc: model_spec(wc.model),
        train=config["pretrain"],
        device=config["device"],
        checkpoint=lambda wc: f"results/checkpoints/pretrain/{wc.model}",
    script:
        "../scripts/pretrain.py"
