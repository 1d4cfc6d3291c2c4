import sys

from snakemake.utils import min_version, validate

min_version("9.0")

sys.path.insert(0, workflow.basedir)
from reidquant.configcheck import check_config


configfile: "config/config.yaml"


# One line naming the wrong field first; then Snakemake's validation fills in the defaults.
check_config(config, workflow.source_path("workflow/schemas/config.schema.yaml"))
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/summary.csv",
        "results/summary.md",
