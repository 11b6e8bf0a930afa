# lfsgan — lifelong few-shot image generation as a Snakemake DAG.
#
#   prepare_data[domain] -> pretrain_source[seed] (or install_source, import_source) -> fisher
#     -> train_task[method, task] (chained per method) -> sample[method, after, task]
#     -> evaluate -> report;   pretrain_source[A], [B] -> match_permutation -> lmc_curve -> report;
#     pretrain_source[seeds...] -> (ste_search) -> merge_sources -> report
#
# Glue only: the config, its validation, the includes and the final target. Every rule runs one
# `lfsgan` verb; the logic lives in the package.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
wildcard_constraints:
    domain=_alternatives(DOMAINS),
    task=_alternatives(TASKS),
    after=_alternatives(TASKS),
    method=_alternatives(METHODS),
    seed=r"\d+",
    a=r"\d+",
    b=r"\d+",
    seeds=r"\d+(_\d+)+",


include: "workflow/rules/data.smk"
include: "workflow/rules/source.smk"
include: "workflow/rules/fisher.smk"
include: "workflow/rules/tasks.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/permutation.smk"
include: "workflow/rules/report.smk"


report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        final_targets(),
