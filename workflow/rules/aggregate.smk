# aggregate: one tidy table of every run, the paired pretraining effect, figures for the report.


rule aggregate:
    input:
        runs=all_runs(),
        pretrain=expand("results/pretrain/{model}/curve.tsv", model=MODELS),
        audits=expand("results/audit/{task}.tsv", task=TASKS),
    output:
        metrics=report(
            SUMMARY["metrics"],
            caption="../report/metrics.rst",
            category="3. Results",
            labels={"table": "every run"},
        ),
        effect=report(
            SUMMARY["effect"],
            caption="../report/pretrain_effect.rst",
            category="3. Results",
            labels={"table": "pretraining effect"},
        ),
        size_figure=report(
            SUMMARY["size_figure"],
            caption="../report/metric_vs_size.rst",
            category="3. Results",
            labels={"figure": "metric vs model size"},
        ),
        effect_figure=report(
            SUMMARY["effect_figure"],
            caption="../report/pretrain_effect_figure.rst",
            category="3. Results",
            labels={"figure": "pretrained minus scratch"},
        ),
        pretrain_figure=report(
            SUMMARY["pretrain_figure"],
            caption="../report/pretrain_loss.rst",
            category="2. Training",
            labels={"figure": "pretraining loss"},
        ),
        finetune_figure=report(
            SUMMARY["finetune_figure"],
            caption="../report/finetune_curves.rst",
            category="2. Training",
            labels={"figure": "fine-tuning curves"},
        ),
        audit=report(
            SUMMARY["audit"],
            caption="../report/audit_summary.rst",
            category="3. Results",
            labels={"table": "near-duplicate audit, every task"},
        ),
    log:
        "logs/aggregate/aggregate.log",
    conda:
        "../../envs/dnalm.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../scripts/aggregate.py"
