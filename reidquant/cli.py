"""``python -m reidquant <command>``: every stage of the workflow, usable on its own."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reidquant.errors import ReidQuantError, run_for_user


def json_object(text: str, flag: str) -> dict:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ReidQuantError(f"{flag}: not valid JSON ({error})") from None


def variant_spec(text: str) -> dict:
    """A variant spec from ``--spec``, checked against the workflow's schema, defaults filled."""
    from reidquant.variants import complete

    return complete(json_object(text, "--spec"), "--spec")


def section(key: str, **given) -> dict:
    """Config section ``key`` from the options given on the command line (None: not given),
    checked against the workflow's schema, which fills in the rest: defaults have one home."""
    from reidquant.configcheck import checked, schema_part

    return checked({k: v for k, v in given.items() if v is not None}, schema_part(key), f"config section {key}")


def at_least(minimum: int):
    """An argparse type: an integer no smaller than ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = "integer"  # how argparse names the type in its error message
    return parse


def without_lists(record: dict) -> dict:
    """``record`` without its per-call lists, at any depth: what a person reads of a timing."""
    return {k: without_lists(v) if isinstance(v, dict) else v for k, v in record.items() if not isinstance(v, list)}


def _synth(args) -> None:
    from reidquant.synth import SynthSizes, generate

    given = {"train_ids": args.train_ids, "test_ids": args.test_ids, "images_per_camera": args.images_per_camera,
             "cameras_per_id": args.cameras_per_id, "distractors": args.distractors, "junk": args.junk,
             "multi_query_per_query": args.multi_query, "seed": args.seed}
    sizes = SynthSizes.from_settings({k: v for k, v in given.items() if v is not None})
    print(json.dumps(generate(Path(args.out), sizes)))


def _prepare(args) -> None:
    from reidquant.market import prepare

    print(json.dumps(prepare(Path(args.raw), Path(args.out), require_full=args.require_full)))


def _evaluate(args) -> None:
    from reidquant.evaluate import evaluate_and_save

    evaluate_and_save(args.features, args.reference, args.json)


def _train(args) -> None:
    from reidquant.configcheck import checked, schema_part
    from reidquant.train import recipe, train

    settings = checked(json_object(args.settings or "{}", "--settings"), schema_part("train"), "--settings")
    size = section("input", height=args.height, width=args.width)
    summary = train(data_root=Path(args.data), out=Path(args.out), hp=recipe(settings, args.dataset),
                    height=size["height"], width=size["width"], threads=args.threads)
    print(f"trained {summary['epochs']} epochs on {summary['images']} images in {summary['train_s']:.0f} s")


def build_record_of(artifact, record: str | None) -> Path:
    """The build's record of an artifact folder: ``--record``, else ``<folder>.quantize.json``
    beside it, where ``quantize`` writes it by default (the workflow keeps it at
    results/<variant>/quantize.json)."""
    return Path(record) if record else Path(f"{Path(artifact)}.quantize.json")


def _quantize(args) -> None:
    from reidquant.pipeline import quantize

    size = section("input", height=args.height, width=args.width)
    print(json.dumps(quantize(name=args.name, spec=variant_spec(args.spec), weights=Path(args.weights),
                              data_root=Path(args.data), out=Path(args.out), height=size["height"],
                              width=size["width"], threads=args.threads,
                              info_out=build_record_of(args.out, args.record))))


def _extract(args) -> None:
    from reidquant.configcheck import REFERENCE
    from reidquant.pipeline import ExtractSettings, extract_features

    config = {"input": section("input", height=args.height, width=args.width),
              "extract": section("extract", batch_size=args.batch_size, workers=args.workers, ms=args.ms),
              "benchmark": section("benchmark", latency_batches=args.latency_batches,
                                   latency_rounds=args.latency_rounds), "threads": args.threads}
    reference = Path(args.reference_artifact) if args.reference_artifact else None
    timing = extract_features(name=Path(args.artifact).name, artifact=Path(args.artifact),
                              record=build_record_of(args.artifact, args.record),
                              spec=variant_spec(args.spec), device=args.device, data_root=Path(args.data),
                              out=Path(args.out), timing_out=Path(args.timing),
                              settings=ExtractSettings.from_config(config), reference_artifact=reference,
                              reference_record=reference and build_record_of(reference, args.reference_record),
                              reference_spec=variant_spec(json.dumps({"type": REFERENCE})),
                              trust_compiled=args.trust_compiled)
    print(json.dumps(without_lists(timing)))


def _sensitivity(args) -> None:
    from reidquant.pipeline import layer_sensitivity
    from reidquant.sensitivity import most_sensitive

    size = section("input", height=args.height, width=args.width)
    rows = layer_sensitivity(name=args.name, spec=variant_spec(args.spec), weights=Path(args.weights),
                             data_root=Path(args.data), artifact=Path(args.artifact),
                             record=build_record_of(args.artifact, args.record), out=Path(args.out),
                             height=size["height"], width=size["width"], threads=args.threads)
    print(f"{len(rows)} layers measured, written to {args.out}; most sensitive: "
          + ", ".join(row["layer"] for row in most_sensitive(rows, 5)))


def _fetch(args) -> None:
    from reidquant.fetch import download

    download(args.url, Path(args.out), sha256=args.sha256)
    print(args.out)


RECORD_HELP = ("the build's record, with the sha256 of every artifact file (default: <artifact folder>.quantize.json; "
               "the workflow's: results/<variant>/quantize.json)")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m reidquant", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)

    p = commands.add_parser("synth", help="write the embedded dataset in Market-1501's raw format")
    p.add_argument("--out", required=True)
    p.add_argument("--train-ids", type=int)
    p.add_argument("--test-ids", type=int)
    p.add_argument("--images-per-camera", type=int)
    p.add_argument("--cameras-per-id", type=int)
    p.add_argument("--distractors", type=int)
    p.add_argument("--junk", type=int)
    p.add_argument("--multi-query", type=int)
    p.add_argument("--seed", type=int)
    p.set_defaults(run=_synth)

    p = commands.add_parser("prepare", help="raw Market-1501 folder -> per-identity layout")
    p.add_argument("raw")
    p.add_argument("out")
    p.add_argument("--require-full", action="store_true", help="check the complete dataset's image counts")
    p.set_defaults(run=_prepare)

    p = commands.add_parser("evaluate", help="score a features .mat file (ours or the reference project's)")
    p.add_argument("features")
    p.add_argument("--reference", help="fp32 features of the same images, for fidelity")
    p.add_argument("--json", help="write the metrics here")
    p.set_defaults(run=_evaluate)

    sizes = argparse.ArgumentParser(add_help=False)
    sizes.add_argument("--height", type=at_least(1), help="default: the config schema's input.height")
    sizes.add_argument("--width", type=at_least(1), help="default: the config schema's input.width")
    sizes.add_argument("--threads", type=at_least(1), default=None)

    p = commands.add_parser("train", parents=[sizes], help="train ft_net_dense or ft_net (--settings '{\"arch\": \"ft_net\"}') on a prepared dataset")
    p.add_argument("--data", required=True, help="prepared dataset folder (with train_all/)")
    p.add_argument("--out", required=True, help="folder for net_last.pth and opts.yaml")
    p.add_argument("--dataset", default="synthetic", choices=["market1501", "synthetic"],
                   help="which dataset it is (picks the recipe)")
    p.add_argument("--settings", help="JSON of train settings overriding the recipe")
    p.set_defaults(run=_train)

    p = commands.add_parser("quantize", parents=[sizes], help="build one variant's artifact")
    p.add_argument("--name", required=True)
    p.add_argument("--spec", required=True, help='JSON variant spec, e.g. {"type": "pt2e_int8"}')
    p.add_argument("--weights", required=True, help="checkpoint folder (net_last.pth + opts.yaml)")
    p.add_argument("--data", required=True, help="prepared dataset folder (calibration uses train/)")
    p.add_argument("--out", required=True, help="folder for the artifact (model.pt, model.xml + .bin, ...)")
    p.add_argument("--record", help=RECORD_HELP)
    p.set_defaults(run=_quantize)

    p = commands.add_parser("sensitivity", parents=[sizes], help="per-layer sensitivity of a built int8 artifact")
    p.add_argument("--name", required=True)
    p.add_argument("--spec", required=True, help="the JSON variant spec it was built with")
    p.add_argument("--weights", required=True, help="the checkpoint folder it was built from")
    p.add_argument("--data", required=True, help="prepared dataset folder (val/ is measured on)")
    p.add_argument("--artifact", required=True, help="the folder quantize wrote")
    p.add_argument("--out", required=True, help="the csv to write")
    p.add_argument("--record", help=RECORD_HELP)
    p.set_defaults(run=_sensitivity)

    p = commands.add_parser("extract", parents=[sizes], help="query/gallery features of one variant on one device")
    p.add_argument("--artifact", required=True, help="the folder quantize wrote")
    p.add_argument("--spec", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--timing", required=True)
    p.add_argument("--batch-size", type=at_least(1))
    p.add_argument("--workers", type=at_least(0))
    p.add_argument("--ms", type=float, nargs="+")
    p.add_argument("--latency-batches", type=at_least(1), nargs="+",
                   help="batch sizes whose per-call latency is timed (default: the config schema's)")
    p.add_argument("--latency-rounds", type=at_least(1), help="timed calls per latency batch size")
    p.add_argument("--reference-artifact", help="the fp32 artifact folder, timed side by side for the speedup")
    p.add_argument("--record", help=RECORD_HELP)
    p.add_argument("--reference-record", help="the fp32 build's record (default: <its folder>.quantize.json)")
    p.add_argument("--trust-compiled", action="store_true",
                   help="load a compiled program (native code) that no build on this machine made")
    p.set_defaults(run=_extract)

    p = commands.add_parser("fetch", help="download a file with an optional sha256 check")
    p.add_argument("url")
    p.add_argument("out")
    p.add_argument("--sha256")
    p.set_defaults(run=_fetch)
    return top


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    run_for_user(args.run, args)
