"""Train Cloud-Adapter (and its two baselines) around the frozen DINOv2-S/14 on clouded tiles of the
real Landsat-7 scene, on one CPU thread.

    python -m training.cloud_adapter.train --seeds 0 1 2      # every variant per seed, resumable
    python -m training.cloud_adapter.train --card             # seed 0 weights -> assets/cloud_adapter
    python -m training.cloud_adapter.train --card --variants full   # only the full adapter's file
    python -m training.cloud_adapter.train --seeds 0 --variants off full --steps 200   # other step counts, logged apart

``--card`` writes adapter_full.safetensors, adapter_lora.safetensors and head_off.safetensors (each with
its .json config) from the finished seed-0 runs.

Variants: "off" (frozen backbone + FPN head), "lora" (low-rank attention over the tokens
themselves, no context branch), "full" (context branch + low-rank cross-attention). Same head,
same data, same steps, same seed for each. Data: a fixed pool of clouded training crops (pool seed
0, cached under training/checkpoints/cloud_adapter/, git-ignored) with random flips and turns
drawn from (seed, step). The adapter follows every block from block 0, so nothing but the patch
embedding is shared between variants: there is no frozen prefix worth caching.

Checkpoints every 25 steps (atomic replace) under training/checkpoints/cloud_adapter/runs/;
a stopped run resumes there; a finished one is not repeated. Each finished run appends its
held-out and shifted scores to assets/cloud_adapter/training_log.json (CPU seconds are process
time summed over resumes).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adapters.cloud_adapter import data
from adapters.cloud_adapter.modeling import build
from adapters.dense.backbone import load_dinov2_small
from adapters.dense.metrics import confusion, scores

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "training" / "checkpoints" / "cloud_adapter"
ASSETS = REPO / "assets" / "cloud_adapter"
LOG = ASSETS / "training_log.json"
POOL_N, POOL_SEED = 384, 0
# 600 steps: at 200 (the first recipe, runs kept in the log) the frozen baseline and both adapters had
# not finished learning; every variant runs the same steps
STEPS, BATCH, LR = 600, 4, 1e-3
# the adapter's own rate: a seed-0 trial at 5e-3 did worse than 1e-3 (kept under "superseded" in the log)
ADAPTER_LR = 1e-3
VARIANTS = ("off", "full", "lora")
# Cloud-Adapter with the official code's has_cat option, at the width and depth of its has_cat
# configurations (e.g. cloud_adapter_pmaa_convnext_lora_16_adapter_all_has_cat: context width 64, four
# stages; they concatenate one pooled context map to every decoder input, here each level gets its own
# stage as the code's multi-feature branch does). The first bundle ran width 32, three stages and no
# concatenation: it left the frozen model's mIoU where it was (+0.2 points; runs kept under "superseded")
FULL_SETTINGS = {"has_cat": True, "context_dim": 64, "context_depth": 4}
SAVE_EVERY = 25


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def cached(name: str, make):
    path = CKPT / f"{name}.npz"
    if path.is_file():
        z = np.load(path)
        return z["images"], z["labels"]
    images, labels = make()
    CKPT.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path.with_suffix(".tmp.npz"), images=images, labels=labels)
    os.replace(path.with_suffix(".tmp.npz"), path)
    return images, labels


def pools():
    train = cached(f"pool_train_{POOL_N}_{POOL_SEED}", lambda: data.train_set(POOL_N, POOL_SEED))
    heldout = cached("pool_heldout", data.heldout_set)
    shifted = cached("pool_shifted", data.shifted_set)
    return train, heldout, shifted


@torch.no_grad()
def evaluate(model, images: np.ndarray, labels: np.ndarray, batch: int = 16) -> dict:
    model.eval()
    matrix = np.zeros((4, 4), np.int64)
    for i in range(0, len(images), batch):
        pred = model(torch.from_numpy(images[i:i + batch])).argmax(1).numpy()
        matrix += confusion(pred, labels[i:i + batch], 4)
    s = scores(matrix)
    return {"miou": s["miou"], "iou": [float(v) for v in s["iou"]], "f1": [float(v) for v in s["f1"]],
            "accuracy": s["accuracy"], "confusion": matrix.tolist()}


def param_groups(model) -> list[dict]:
    """The adapter at ADAPTER_LR, the head at LR (the frozen backbone is not trained)."""
    named = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    groups = [{"params": [p for n, p in named if n.startswith("adapter.")], "lr": ADAPTER_LR},
              {"params": [p for n, p in named if not n.startswith("adapter.")], "lr": LR}]
    return [g for g in groups if g["params"]]


def train_one(backbone, variant: str, seed: int, train, steps: int = STEPS):
    run_dir = CKPT / "runs"
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / f"{variant}_s{seed}_{steps}steps.pt"
    torch.manual_seed(seed)
    model = build(backbone, variant, **(FULL_SETTINGS if variant == "full" else {}))
    optimiser = torch.optim.AdamW(param_groups(model), lr=LR, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimiser, lambda s: 0.5 * (1 + np.cos(np.pi * min(s, steps) / steps)))
    step, cpu = 0, 0.0
    if path.is_file():
        state = torch.load(path, weights_only=False)
        model.load_state_dict(state["model"], strict=False)
        step, cpu = state["step"], state["cpu"]
        if step < steps:  # a finished run needs only its weights
            optimiser.load_state_dict(state["optimiser"])
            schedule.load_state_dict(state["schedule"])
    images, labels = train
    start = time.process_time()
    while step < steps:
        rng = np.random.default_rng([seed, step])
        idx = rng.integers(0, len(images), BATCH)
        x, y = data.augment(images[idx], labels[idx], rng)
        model.train()
        loss = F.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        step += 1
        if step % SAVE_EVERY == 0 or step == steps:
            spent = cpu + time.process_time() - start
            _atomic_save({"model": model.adapter_state_dict(), "optimiser": optimiser.state_dict(),
                          "schedule": schedule.state_dict(), "step": step, "cpu": spent}, path)
            print(f"{variant} seed {seed} step {step}/{steps} loss {float(loss.detach()):.3f} cpu {spent:.0f}s", flush=True)
    final = torch.load(path, weights_only=False)
    model.load_state_dict(final["model"], strict=False)
    return model.eval(), final["cpu"]


def read_log() -> dict:
    return json.loads(LOG.read_text()) if LOG.is_file() else {"runs": []}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--card", action="store_true", help="write seed 0's weights into assets/cloud_adapter")
    args = parser.parse_args()
    torch.set_num_threads(1)
    backbone = load_dinov2_small()
    train, heldout, shifted = pools()
    ASSETS.mkdir(parents=True, exist_ok=True)
    if args.card:
        from adapters.cloud_adapter.loading import save_variant

        for variant in args.variants:
            model, _ = train_one(backbone, variant, 0, train, args.steps)
            save_variant(ASSETS, model)
        return
    for seed in args.seeds:
        for variant in args.variants:
            log = read_log()
            if any(r["variant"] == variant and r["seed"] == seed and r["steps"] == args.steps for r in log["runs"]):
                continue
            model, cpu = train_one(backbone, variant, seed, train, args.steps)
            row = {"variant": variant, "seed": seed, "steps": args.steps, "batch": BATCH, "lr": LR, "adapter_lr": ADAPTER_LR, "cpu_seconds": round(cpu, 1),
                   "settings": FULL_SETTINGS if variant == "full" else {},
                   "heldout": evaluate(model, *heldout), "shifted": evaluate(model, *shifted)}
            log = read_log()
            log["runs"].append(row)
            log["data"] = {"train_pool": POOL_N, "heldout_samples": int(len(heldout[0])), "shifted_samples": int(len(shifted[0])),
                           "tile": data.TILE, "threads": 1, "main_steps": STEPS}
            LOG.write_text(json.dumps(log, indent=1) + "\n")
            print(f"== {variant} seed {seed}: held-out mIoU {row['heldout']['miou']:.3f} "
                  f"F1 {np.round(row['heldout']['f1'], 3).tolist()} shifted {row['shifted']['miou']:.3f}", flush=True)


if __name__ == "__main__":
    main()
