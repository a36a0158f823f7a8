# pretrain: next-token language modelling for every model with a pretrained run (finetune.inits).
# A model with init_from is pretrained in its checkpoint's architecture, from random weights or,
# with pretrain.init_from: published, from the checkpoint's weights. With resources.gpu > 1 the
# job runs under torchrun, one DDP rank per GPU, the batch size being the global batch
# (src/dnalm/jobs.py).


rule pretrain:
    input:
        unpack(pretrain_tokens),
        tokenizer=model_tokenizer,
        published=published_checkpoint,
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
    threads: model_resources("pretrain", "threads")
    resources:
        mem_mb=model_resources("pretrain", "mem_mb"),
        runtime=model_resources("pretrain", "runtime"),
        gpu=model_resources("pretrain", "gpu"),
    params:
        model=lambda wc: model_spec(wc.model),
        train={k: v for k, v in config["pretrain"].items() if k != "init_from"},
        # random weights, or (a model with init_from, pretrain.init_from) the checkpoint's
        start=lambda wc: (
            config["pretrain"]["init_from"] if wc.model in PUBLISHED else "scratch"
        ),
        device=config["device"],
        checkpoint=lambda wc: f"results/checkpoints/pretrain/{wc.model}",
    script:
        "../scripts/pretrain.py"
