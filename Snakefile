# lfsgan — lifelong few-shot image generation as a Snakemake DAG.
#
#   prepare_data[domain] -> pretrain_source[seed] (or install_source, import_source) -> fisher
#     -> train_task[method, task] (chained per method) -> sample[method, after, task]
#     -> evaluate -> report;   pretrain_source[A], [B] -> match_permutation -> lmc_curve -> report;
#     pretrain_source[seeds...] -> (ste_search) -> merge_sources -> report
#
# Glue only: the config, its validation, the includes and the final target. Every rule runs one
# `lfsgan` verb; the logic lives in the package.
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")


# The config: config/config.yaml (the offline demo) when the command line names no --configfile;
# otherwise exactly the files it names, merged in their order. A --configfile therefore replaces the
# demo config rather than being merged into it, so no demo key (its shipped checkpoints, its domains)
# leaks into another setup; an overlay such as config/study.yaml is named after its base:
#   --configfile config/config.yaml config/study.yaml
# (`--config key=value` still updates whichever config was loaded.)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"

elif _missing := [k for k in yaml.safe_load(open("workflow/schemas/config.schema.yaml"))["required"] if k not in config]:
    raise WorkflowError(
        f"--configfile {' '.join(map(str, workflow.overwrite_configfiles))} lacks {', '.join(_missing)}: "
        "the files named by --configfile replace config/config.yaml; to apply an overlay to the demo config, "
        "name the demo config first: --configfile config/config.yaml OVERLAY.yaml"
    )


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
