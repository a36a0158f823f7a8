# finetune (init = pretrained weights) and scratch (init = random): same architecture, data,
# optimiser, schedule and step budget; model selection on val, one score on test.
# With resources.gpu > 1 a job runs under torchrun, one DDP rank per GPU, the batch size
# being the global batch (src/dnalm/jobs.py).


rule finetune:
    input:
        unpack(finetune_tokens),
        test_windows="results/windows/{task}/test.parquet",
        audit=audit_gate,
        pretrained="results/pretrain/{model}/model.safetensors",
        tokenizer=lambda wc: f"results/tokenizers/{MODELS[wc.model]['tokenizer']}/tokenizer.json",
    output:
        metrics="results/finetune/{task}/{model}/pretrained/seed{seed}/metrics.json",
        predictions="results/finetune/{task}/{model}/pretrained/seed{seed}/predictions.tsv",
        curve="results/finetune/{task}/{model}/pretrained/seed{seed}/curve.tsv",
        model=directory("results/finetune/{task}/{model}/pretrained/seed{seed}/model"),
    log:
        "logs/finetune/{task}/{model}/pretrained/seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune/{task}/{model}/seed{seed}.tsv"
    conda:
        "../../envs/dnalm.yaml"
    threads: resources_of("finetune", "threads")
    resources:
        mem_mb=resources_of("finetune", "mem_mb"),
        runtime=resources_of("finetune", "runtime"),
        gpu=resources_of("finetune", "gpu"),
    params:
        init="pretrained",
        model=lambda wc: model_spec(wc.model),
        train=finetune_params(),
        device=config["device"],
        checkpoint=lambda wc: checkpoint_dir(wc, "pretrained"),
    script:
        "../scripts/train_classifier.py"


rule scratch:
    input:
        unpack(finetune_tokens),
        test_windows="results/windows/{task}/test.parquet",
        audit=audit_gate,
        tokenizer=lambda wc: f"results/tokenizers/{MODELS[wc.model]['tokenizer']}/tokenizer.json",
    output:
        metrics="results/finetune/{task}/{model}/scratch/seed{seed}/metrics.json",
        predictions="results/finetune/{task}/{model}/scratch/seed{seed}/predictions.tsv",
        curve="results/finetune/{task}/{model}/scratch/seed{seed}/curve.tsv",
        model=directory("results/finetune/{task}/{model}/scratch/seed{seed}/model"),
    log:
        "logs/finetune/{task}/{model}/scratch/seed{seed}.log",
    benchmark:
        "results/benchmarks/scratch/{task}/{model}/seed{seed}.tsv"
    conda:
        "../../envs/dnalm.yaml"
    threads: resources_of("finetune", "threads")
    resources:
        mem_mb=resources_of("finetune", "mem_mb"),
        runtime=resources_of("finetune", "runtime"),
        gpu=resources_of("finetune", "gpu"),
    params:
        init="scratch",
        model=lambda wc: model_spec(wc.model),
        train=finetune_params(),
        device=config["device"],
        checkpoint=lambda wc: checkpoint_dir(wc, "scratch"),
    script:
        "../scripts/train_classifier.py"
