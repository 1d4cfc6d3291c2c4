import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.pipeline import ExtractSettings, extract_features

p, i, o = snakemake.params, snakemake.input, snakemake.output
run_rule(
    snakemake.log[0], extract_features,
    name=snakemake.wildcards.variant, artifact=Path(i.model), record=Path(i.build), spec=json.loads(p.spec),
    device=snakemake.wildcards.device, data_root=Path(i.data), out=Path(o.features), timing_out=Path(o.timing),
    settings=ExtractSettings.from_config(json.loads(p.settings), threads=snakemake.threads),
    reference_artifact=Path(i.reference) if i.reference else None,
    reference_record=Path(i.reference_build) if i.reference_build else None,
    reference_spec=json.loads(p.reference_spec), dataset_label=p.dataset, record_not_run=True,
    trust_compiled=p.trust_compiled,
)
