# dnalm: does pretraining a DNA language model pay off? Pretrain, fine-tune vs scratch, compare.
from snakemake.utils import min_version

min_version("9.0")


# The embedded default, unless --configfile names a whole config of its own (config/study.yaml):
# Snakemake would otherwise deep-merge the two, mixing the default's models and tasks into it.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/windows.smk"
include: "workflow/rules/audit.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        all_outputs(),


onsuccess:
    print(
        "\ndnalm finished.\n"
        "  summary tables and figures: results/summary/ (metrics.tsv, pretrain_effect.tsv, figures/)\n"
        "  predictions:                results/predict/\n"
        "  HTML report:                snakemake --report report.html\n"
    )
