rule quantize:
    input:
        weights=str(WEIGHTS.folder / "net_last.pth"),
        opts=str(WEIGHTS.folder / "opts.yaml"),
        data=str(DATASET.prepared),
        ranking=ranking,
        code=library("quantize.py"),
    output:
        # What the variant deploys (model.pt, model.pt2 and model_compiled.pt2, OpenVINO's
        # model.xml + model.bin, model.onnx) and the build's record, build.json
        model=directory("results/{variant}/model"),
        info="results/{variant}/quantize.json",
    log:
        "results/logs/quantize_{variant}.log",
    conda:
        "../../envs/cpu.yaml"
    # Nothing here is timed: one thread each, side by side. Much of a build is single-threaded
    # (graph export, conversion, process start), and a calibration's convolutions lose little
    # on one thread; a timed job still waits for every core.
    threads: 1
    params:
        spec=lambda wildcards: stable(variant_spec(wildcards)),
        height=config["input"]["height"],
        width=config["input"]["width"],
        # What the artifact is built from, recorded with it: a new source rebuilds it.
        weights=WEIGHTS.label,
        dataset=DATASET.name,
        # A budget is judged on the embedding the extraction makes: its scales, where it has one.
        ms=budget_scales,
        invalidates=downstream,
    script:
        "../scripts/quantize.py"
