import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, workflow.basedir)


configfile: "config/config.yaml"


# common.smk checks the config against reidquant/config.schema.yaml first.
include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/sensitivity.smk"
include: "workflow/rules/search.smk"


rule all:
    input:
        "results/summary.csv",
        "results/summary.md",
