"""Train ``ft_net_dense`` or ``ft_net`` on ``train_all`` and write a reference-format checkpoint.

The ``reference`` recipe is Person_reID_baseline_pytorch's default (SGD, momentum 0.9,
Nesterov, weight decay 5e-4, lr 0.05 for the new layers and 0.1x for the backbone, step
decay at 2/3 of the epochs, batch 32, pad-and-crop, horizontal flip). ``cpu_short`` is what
fits the embedded dataset on a 2-core CPU: no ImageNet weights exist here, so the backbone
learns at the full rate, for a few epochs, in bfloat16 autocast where the CPU has it.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from reidquant.architectures import DEFAULT_ARCH, DEFAULT_LINEAR_NUM, architecture
from reidquant.configcheck import MIN_INPUT_SIZE, check_input_size
from reidquant.data import ImageList, train_transform
from reidquant.errors import ReidQuantError
from reidquant.jsonio import atomic_path, write_json
from reidquant.market import list_prepared
from reidquant.safeload import load_tensors
from reidquant.model import DEFAULT_OPTS, build, write_opts
from reidquant.devices import cpu_has_bf16, set_threads
from reidquant.plots import training_curve

RECIPES = {
    "reference": {"optimizer": "sgd", "epochs": 60, "batch_size": 32, "lr": 0.05, "backbone_lr_mult": 0.1, "step_fraction": 2 / 3,
                  "weight_decay": 5e-4, "erasing": 0.0, "label_smoothing": 0.0, "droprate": 0.5, "stride": 2,
                  "linear_num": DEFAULT_LINEAR_NUM, "bf16": False, "low_res_epochs": 0, "workers": 2, "seed": 0, "arch": DEFAULT_ARCH},
    "cpu_short": {"optimizer": "adamw", "epochs": 10, "batch_size": 32, "lr": 1e-3, "backbone_lr_mult": 1.0,
                  "step_fraction": 0.75, "weight_decay": 5e-4, "erasing": 0.0, "label_smoothing": 0.0, "droprate": 0.5, "stride": 2,
                  "linear_num": DEFAULT_LINEAR_NUM, "bf16": True, "low_res_epochs": 8, "workers": 1, "seed": 0, "arch": DEFAULT_ARCH},
}
RESUME_NAME = "resume.pt"


def recipe(settings: dict, dataset: str) -> dict:
    """The named recipe (``auto``: reference for Market-1501, cpu_short otherwise) with overrides."""
    name = settings.get("recipe", "auto")
    if name == "auto":
        name = "reference" if dataset == "market1501" else "cpu_short"
    if name not in RECIPES:
        raise ReidQuantError(f"train.recipe: unknown recipe {name!r} (auto, {', '.join(RECIPES)})")
    overrides = {k: v for k, v in settings.items() if k != "recipe" and v is not None}
    hp = {**RECIPES[name], **overrides, "recipe": name}
    if "low_res_epochs" in overrides:
        if hp["low_res_epochs"] >= hp["epochs"] > 0:
            raise ReidQuantError(f"train.low_res_epochs ({hp['low_res_epochs']}) must be less than train.epochs "
                                 f"({hp['epochs']}): at least the last epoch must run at the full input size")
        return hp
    # The recipe's half-size epochs, with fewer epochs overall: keep as many full-size epochs as
    # the recipe ends with, so the network still adapts to the size it is tested at.
    full_size = RECIPES[name]["epochs"] - RECIPES[name]["low_res_epochs"]
    low_res = min(hp["low_res_epochs"], max(0, hp["epochs"] - full_size))
    if low_res != hp["low_res_epochs"]:
        print(f"note: train.epochs is {hp['epochs']}; recipe {name}'s low_res_epochs {hp['low_res_epochs']} "
              f"becomes {low_res}, so that {hp['epochs'] - low_res} of them run at full size", file=sys.stderr)
        hp["low_res_epochs"] = low_res
    return hp


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def identity_targets(paths) -> tuple[list[int], list[str]]:
    """Class index per image, from the per-identity folder names (sorted, like ImageFolder)."""
    classes = sorted({Path(p).parent.name for p in paths})
    index = {c: i for i, c in enumerate(classes)}
    return [index[Path(p).parent.name] for p in paths], classes


def optimizer_for(net, hp: dict) -> torch.optim.Optimizer:
    head = list(net.classifier.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in net.parameters() if id(p) not in head_ids]
    groups = [{"params": backbone, "lr": hp["lr"] * hp["backbone_lr_mult"]}, {"params": head, "lr": hp["lr"]}]
    if hp["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, weight_decay=hp["weight_decay"])
    return torch.optim.SGD(groups, weight_decay=hp["weight_decay"], momentum=0.9, nesterov=True)


def _fingerprint(hp: dict, paths) -> str:
    blob = json.dumps({"hp": hp, "images": [str(p) for p in paths]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def train_one_epoch(net, loader, optimizer, criterion, use_bf16: bool, desc: str) -> dict:
    net.train()
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(loader, desc=desc, unit="batch")
    for images, targets in bar:
        images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
            logits = net(images)
            loss = criterion(logits.float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(targets)
        correct += (logits.argmax(1) == targets).sum().item()
        seen += len(targets)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"loss": loss_sum / seen, "acc": correct / seen}


def epoch_size(epoch: int, hp: dict, height: int, width: int) -> tuple[int, int]:
    """The input size of an epoch: half size for the first ``low_res_epochs`` (progressive
    resizing: a quarter of the compute; the last epochs at full size adapt the network to it),
    never below what the network can run."""
    if epoch < hp["low_res_epochs"]:
        return max(height // 2, MIN_INPUT_SIZE), max(width // 2, MIN_INPUT_SIZE)
    return height, width


def train(data_root: Path, out: Path, hp: dict, height: int, width: int, threads: int | None = None) -> dict:
    """Train on ``data_root/train_all``; write ``net_last.pth``, ``opts.yaml`` and a curve to ``out``."""
    if hp["epochs"] < 1:
        raise ReidQuantError(f"train epochs must be at least 1, got {hp['epochs']}: no training would happen")
    check_input_size(height, width, field="input size")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_threads(threads)
    paths = list_prepared(data_root, "train_all")
    targets, classes = identity_targets(paths)
    if len(classes) < 2:
        raise ReidQuantError(f"{data_root}/train_all: need at least 2 identities to train, found {len(classes)}")
    seed_everything(hp["seed"])
    opts = {**DEFAULT_OPTS, **architecture(hp["arch"]).OPTS, "nclasses": len(classes), "stride": hp["stride"],
            "linear_num": hp["linear_num"], "droprate": hp["droprate"], "lr": hp["lr"],
            "batchsize": hp["batch_size"], "total_epoch": hp["epochs"], "erasing_p": hp["erasing"],
            "h": height, "w": width, "recipe": hp["recipe"]}
    # Channels-last is oneDNN's native convolution layout: a training step takes about 3/4
    # of the time, in fp32 and in bf16.
    net = build(opts).to(memory_format=torch.channels_last)
    optimizer = optimizer_for(net, hp)
    step = max(1, round(hp["epochs"] * hp["step_fraction"]))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=0.1)
    criterion = nn.CrossEntropyLoss(label_smoothing=hp["label_smoothing"])
    use_bf16 = bool(hp["bf16"]) and cpu_has_bf16()
    history: list[dict] = []
    first_epoch = 0
    fingerprint = _fingerprint(hp | {"h": height, "w": width}, paths)
    resume_path = out / RESUME_NAME
    if resume_path.exists():
        state = load_tensors(resume_path, "a resume file written by train")
        if state.get("fingerprint") == fingerprint:
            net.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            history, first_epoch = state["history"], state["epoch"] + 1
            print(f"resuming from {resume_path} after epoch {first_epoch}")
    generator = torch.Generator().manual_seed(hp["seed"])
    loaders = {}
    start = time.perf_counter()
    for epoch in range(first_epoch, hp["epochs"]):
        size = epoch_size(epoch, hp, height, width)
        if size not in loaders:
            loaders[size] = DataLoader(ImageList(paths, targets, train_transform(*size, hp["erasing"])),
                                       batch_size=hp["batch_size"], shuffle=True,
                                       drop_last=len(paths) > hp["batch_size"], num_workers=hp["workers"],
                                       generator=generator)
        generator.manual_seed(hp["seed"] + epoch)  # the same shuffles whether resumed or not
        stats = train_one_epoch(net, loaders[size], optimizer, criterion, use_bf16,
                                desc=f"train epoch {epoch + 1}/{hp['epochs']} at {size[0]}x{size[1]}")
        scheduler.step()
        history.append({"epoch": epoch + 1, **stats, "lr": optimizer.param_groups[1]["lr"]})
        with atomic_path(resume_path) as tmp:
            torch.save({"fingerprint": fingerprint, "model": net.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state(), "history": history,
                        "epoch": epoch}, tmp)
    elapsed = time.perf_counter() - start
    net.eval().to(memory_format=torch.contiguous_format)
    with atomic_path(out / "net_last.pth") as tmp:
        torch.save(net.state_dict(), tmp)
    write_opts(out / "opts.yaml", opts)
    summary = {"epochs": hp["epochs"], "images": len(paths), "identities": len(classes), "bf16": use_bf16,
               "train_s": elapsed, "history": history, "hyperparameters": hp}
    write_json(out / "train.json", summary)
    training_curve(history, out / "training_curve.png", hp["arch"])
    resume_path.unlink(missing_ok=True)
    return summary
