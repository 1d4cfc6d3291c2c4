import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1]))

from reidquant.rulelog import run_rule  # first: a Ctrl-C during the imports below is one line too
from reidquant.configcheck import section_defaults
from reidquant.pipeline import ExtractSettings, embed_distractors

p, i = snakemake.params, snakemake.input
settings = {**json.loads(p.settings), "benchmark": section_defaults("benchmark"), "threads": None}
run_rule(
    snakemake.log[0], embed_distractors,
    name=snakemake.wildcards.variant, artifact=Path(i.model), record=Path(i.build), spec=json.loads(p.spec),
    device=snakemake.wildcards.device,
    folder=Path(i.images), count=p.images, shard=snakemake.wildcards.scatteritem, out=Path(snakemake.output[0]),
    settings=ExtractSettings.from_config(settings, threads=snakemake.threads), trust_compiled=p.trust_compiled,
)
