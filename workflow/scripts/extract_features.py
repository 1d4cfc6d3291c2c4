import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.pipeline import extract_features

p = snakemake.params
extract, benchmark = json.loads(p.extract), json.loads(p.benchmark)
run_rule(snakemake.log[0], extract_features, Path(snakemake.input.model), json.loads(p.spec),
         snakemake.wildcards.device, Path(snakemake.input.data), Path(snakemake.output.features),
         Path(snakemake.output.timing), height=p.height, width=p.width, batch_size=extract["batch_size"],
         workers=extract["workers"], ms=extract["ms"], threads=p.threads or snakemake.threads,
         warmup=benchmark["warmup"], repeats=benchmark["repeats"],
         reference_artifact=Path(snakemake.input.reference) if snakemake.input.reference else None,
         reference_spec=json.loads(p.reference_spec))
