"""Continual self-supervised adaptation (GLARE-style UniAdapters, EMA teacher) of the frozen
DINOv2-S/14 on unlabelled tiles of the real Landsat-7 scene, then linear land-cover heads on a
fraction of the labelled pixels, on one CPU thread.

    python -m training.glare.train                 # every loss set x seeds 0 1 2, resumable
    python -m training.glare.train --card          # seed-0 adapters and heads -> assets/glare

Data: a fixed pool of unlabelled training-region tiles (pool seed 0), each in several views
(adapters.glare.data.augment). The UniAdapters follow blocks 6..11 only, so blocks 0..5 are a
frozen prefix whose output is computed once per view and cached: the one thing that makes the
backward affordable on a CPU. Batches and view pairs are drawn from (seed, step).

Each run (loss set, seed) checkpoints every 25 steps (atomic replace) under
$GLARE_CHECKPOINTS (default training/checkpoints/glare, git-ignored); a stopped run resumes there
and a finished one is not repeated. A finished run fits a linear head on its teacher's features
of the labelled training pixels at each labelled fraction (five label draws per seed and fraction,
mean reported) and scores it on the held-out region; the frozen backbone gets the same heads on the same draws.
Everything lands in assets/glare/training_log.json (CPU seconds: process time over resumes).

`--card` writes adapter_global.safetensors, adapter_global_local.safetensors,
adapter_global_local_regional.safetensors (the seed-0 teachers' UniAdapters, each with its .json)
and heads.safetensors + heads.json (the seed-0 linear heads: frozen and each loss set, each
labelled fraction).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from adapters.common.weights import save_bundled
from adapters.dense.backbone import load_dinov2_small
from adapters.glare import data, features, heads
from adapters.glare.modeling import LOCAL_NEGATIVES, LOSS_SETS, Student, Teacher, build, ssl_losses

REPO = Path(__file__).resolve().parents[2]
CKPT = Path(os.environ.get("GLARE_CHECKPOINTS", REPO / "training" / "checkpoints" / "glare"))
ASSETS = REPO / "assets" / "glare"
LOG = ASSETS / "training_log.json"
POOL_TILES, POOL_VIEWS, POOL_SEED = 192, 4, 0
STEPS, BATCH, LR, MOMENTUM = 300, 8, 1e-3, 0.98
SAVE_EVERY = 25
SEEDS = (0, 1, 2)
AUGMENT = "mild"  # names the view recipe in the prefix cache, so a changed recipe never reuses old views
DRAWS = 5  # label draws per seed and fraction below 100%: a seed's score is their mean


def file_stem(loss_set: str) -> str:
    return "adapter_" + loss_set.replace("+", "_")


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_log() -> dict:
    return json.loads(LOG.read_text()) if LOG.is_file() else {}


def write_log(log: dict) -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    tmp = LOG.with_suffix(".tmp")
    tmp.write_text(json.dumps(log, indent=1, sort_keys=True))
    os.replace(tmp, LOG)


def prefix_pool(encoder, regions=("train",)) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Cached frozen-prefix tokens N x V x 1+hw x C (float16 on disk) and dihedral codes N x V."""
    tag = "" if tuple(regions) == ("train",) else "_" + "+".join(regions)
    path = CKPT / f"prefix_pool_{POOL_TILES}x{POOL_VIEWS}_{POOL_SEED}_b{encoder.config.first_adapted}_{AUGMENT}{tag}.pt"
    if path.is_file():
        z = torch.load(path)
        return z["tokens"], z["codes"], z["cpu_seconds"]
    start = time.process_time()
    images, codes = data.unlabelled_views(POOL_TILES, POOL_VIEWS, POOL_SEED, regions=regions)
    flat = torch.from_numpy(images.reshape(-1, *images.shape[2:]))
    with torch.no_grad():
        tokens = torch.cat([encoder.prefix(flat[i:i + 16]) for i in range(0, len(flat), 16)])
    tokens = tokens.reshape(POOL_TILES, POOL_VIEWS, *tokens.shape[1:]).half()
    cpu = time.process_time() - start
    CKPT.mkdir(parents=True, exist_ok=True)
    _atomic_save({"tokens": tokens, "codes": torch.from_numpy(codes), "cpu_seconds": cpu}, path)
    return tokens, torch.from_numpy(codes), cpu


def variant_suffix(lr: float, regions, local_negatives: str = "tile") -> str:
    """'' for the main recipe; otherwise what differs, for run directories and log names."""
    return (("" if lr == LR else f"_lr{lr:g}") + ("" if tuple(regions) == ("train",) else "_ssl-" + "-".join(regions))
            + ("" if local_negatives == "tile" else "_neg-" + local_negatives))


def run_ssl(encoder, pool, loss_set: str, seed: int, steps: int, lr: float = LR, regions=("train",),
            local_negatives: str = "tile") -> dict:
    """Train (or resume) one run; returns the teacher's adapter state and the run's record."""
    tokens, codes = pool
    run_dir = CKPT / "runs" / (f"{loss_set.replace('+', '_')}_s{seed}_{steps}" + variant_suffix(lr, regions, local_negatives))
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / "final.pt"
    if final.is_file():
        return torch.load(final)
    torch.manual_seed(seed)
    encoder.adapter = build(encoder.backbone, loss_set=loss_set).adapter  # fresh: identity at start
    student = Student(encoder)
    teacher = Teacher(student)
    optimiser = torch.optim.AdamW(student.parameters(), lr=lr, weight_decay=0.01)
    state_path = run_dir / "state.pt"
    step, cpu, history = 0, 0.0, []
    if state_path.is_file():
        state = torch.load(state_path)
        student.load_state_dict(state["student"])
        teacher.load_state_dict(state["teacher"])
        optimiser.load_state_dict(state["optimiser"])
        step, cpu, history = state["step"], state["cpu_seconds"], state["history"]
    start = time.process_time()
    while step < steps:
        rng = np.random.default_rng([seed, step])
        pick = torch.from_numpy(rng.choice(len(tokens), BATCH, replace=False))
        va, vb = (torch.from_numpy(v) for v in np.array([rng.choice(POOL_VIEWS, 2, replace=False) for _ in range(BATCH)]).T)
        losses = ssl_losses(encoder, student, teacher, tokens[pick, va].float(), tokens[pick, vb].float(),
                            codes[pick, va], codes[pick, vb], loss_set, local_negatives=local_negatives)
        optimiser.zero_grad(set_to_none=True)
        losses["total"].backward()
        optimiser.step()
        teacher.update(student, MOMENTUM)
        step += 1
        history.append({k: round(float(v.detach()), 4) for k, v in losses.items()})
        if step % SAVE_EVERY == 0 or step == steps:
            now = time.process_time()
            cpu, start = cpu + now - start, now
            _atomic_save({"student": student.state_dict(), "teacher": teacher.state_dict(),
                          "optimiser": optimiser.state_dict(), "step": step, "cpu_seconds": cpu, "history": history}, state_path)
            print(f"{loss_set} seed {seed} step {step}/{steps} {history[-1]} cpu {cpu:.0f}s", flush=True)
    adapter = {f"adapter.{k}": v.clone() for k, v in teacher.adapter.state_dict().items()}
    record = {"loss_set": loss_set, "seed": seed, "steps": steps, "batch": BATCH, "lr": lr, "ssl_regions": list(regions),
              "local_negatives": local_negatives, "cpu_seconds": round(cpu, 1),
              "loss_first": history[0], "loss_last": history[-1],
              "loss_last25_mean": round(float(np.mean([h["total"] for h in history[-25:]])), 4)}
    out = {"adapter": adapter, "record": record}
    _atomic_save(out, final)
    return out


def labelled_features(encoder, adapter_on: bool) -> dict:
    """Features of every labelled pixel of the training and held-out regions."""
    image = __import__("adapters.dense.landsat", fromlist=["scene"]).scene().rgb
    maps, corners = features.tile_maps(encoder, image, flags=(adapter_on,))
    out = {}
    for region in ("train", "heldout"):
        points, classes = data.labelled_pixels(region)
        out[region] = (features.sample_points(maps[adapter_on], corners, encoder.config.image_size, points), classes)
    return out


def head_scores(feats: dict, seed: int, fractions=data.FRACTIONS, draws: int = DRAWS) -> tuple[dict, dict]:
    """Per fraction: the held-out scores of heads fitted on `draws` label draws (seeds 100*seed + d;
    one at 100%, where every draw is the same), their mean mIoU, and the first draw's head."""
    x_train, y_train = feats["train"]
    x_held, y_held = feats["heldout"]
    result, fitted = {}, {}
    for fraction in fractions:
        per_draw = []
        for d in range(draws if fraction < 1 else 1):
            keep = data.fraction_subset(y_train, fraction, 100 * seed + d)
            head = heads.fit_head(x_train[keep], y_train[keep], 100 * seed + d, reference=x_train)
            fitted.setdefault(fraction, head)
            per_draw.append(heads.evaluate(head, x_held, y_held) | {"labelled_pixels": int(len(keep))})
        result[f"{fraction:g}"] = {"miou": float(np.mean([r["miou"] for r in per_draw])),
                                   "accuracy": float(np.mean([r["accuracy"] for r in per_draw])), "draws": per_draw}
    return result, fitted


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--loss-sets", nargs="+", default=list(LOSS_SETS))
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--lr", type=float, default=LR, help="another rate is logged apart (never bundled)")
    parser.add_argument("--ssl-regions", nargs="+", default=["train"], choices=["train", "heldout"],
                        help="where the unlabelled tiles come from; adding the held-out region (its labels unread) "
                             "is logged apart and never bundled")
    parser.add_argument("--local-negatives", default="tile", choices=LOCAL_NEGATIVES,
                        help="the local loss's negatives: the tile's other patches (the main recipe) or other tiles' patches")
    parser.add_argument("--card", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    encoder = build(load_dinov2_small())
    if args.card:
        write_card(encoder, args.steps)
        return
    tokens, codes, pool_cpu = prefix_pool(encoder, tuple(args.ssl_regions))
    log = read_log()
    suffix = variant_suffix(args.lr, args.ssl_regions, args.local_negatives)
    if suffix:  # an exploration's own pool is accounted apart from the main recipe's
        log.setdefault("explore_pool_cpu_seconds", {})[suffix] = round(pool_cpu, 1)
    else:
        log["setup"] = {"pool_tiles": POOL_TILES, "pool_views": POOL_VIEWS, "pool_seed": POOL_SEED,
                        "adapted_blocks": list(encoder.config.adapted), "rank": encoder.config.rank,
                        "prefix_pool_cpu_seconds": round(pool_cpu, 1), "steps": args.steps, "batch": BATCH, "lr": LR,
                        "ema_momentum": MOMENTUM, "threads": 1}
    frozen = log.setdefault("frozen", {})
    start = time.process_time()
    frozen_feats = None
    for seed in args.seeds:
        if str(seed) not in frozen:
            frozen_feats = frozen_feats or labelled_features(encoder, adapter_on=False)
            frozen[str(seed)] = head_scores(frozen_feats, seed)[0]
    log["frozen_cpu_seconds"] = round(log.get("frozen_cpu_seconds", 0) + time.process_time() - start, 1)
    write_log(log)
    runs = log.setdefault("runs", {})
    for seed in args.seeds:
        for loss_set in args.loss_sets:
            name = f"{loss_set}|{seed}|{args.steps}" + variant_suffix(args.lr, args.ssl_regions, args.local_negatives).replace("_", "|")
            if name in runs:
                continue
            out = run_ssl(encoder, (tokens, codes), loss_set, seed, args.steps, args.lr, tuple(args.ssl_regions),
                          args.local_negatives)
            encoder.adapter.load_state_dict({k[len("adapter."):]: v for k, v in out["adapter"].items()})
            start = time.process_time()
            scores, _ = head_scores(labelled_features(encoder, adapter_on=True), seed)
            runs[name] = out["record"] | {"heads": scores, "eval_cpu_seconds": round(time.process_time() - start, 1)}
            log = read_log() | {k: log[k] for k in ("runs", "frozen", "setup", "frozen_cpu_seconds", "explore_pool_cpu_seconds") if k in log}
            write_log(log)
            print(name, {f: round(v["miou"], 3) for f, v in scores.items()},
                  "frozen", {f: round(v["miou"], 3) for f, v in frozen[str(seed)].items()}, flush=True)


def write_card(encoder, steps: int, seed: int = 0) -> None:
    """Seed-0 adapters and every head into assets/glare."""
    tensors, config = {}, {"fractions": list(data.FRACTIONS), "variants": ["frozen", *LOSS_SETS], "seed": seed,
                          "dim": encoder.backbone.dim}
    _, fitted = head_scores(labelled_features(encoder, adapter_on=False), seed)
    for fraction, head in fitted.items():
        for k, v in head.state_dict().items():
            tensors[f"frozen.{fraction:g}.{k}"] = v
    for loss_set in LOSS_SETS:
        out = torch.load(CKPT / "runs" / f"{loss_set.replace('+', '_')}_s{seed}_{steps}" / "final.pt")
        adapter_config = build(encoder.backbone, loss_set=loss_set).config.to_dict()
        save_bundled(ASSETS, out["adapter"], adapter_config, name=file_stem(loss_set))
        encoder.adapter.load_state_dict({k[len("adapter."):]: v for k, v in out["adapter"].items()})
        _, fitted = head_scores(labelled_features(encoder, adapter_on=True), seed)
        for fraction, head in fitted.items():
            for k, v in head.state_dict().items():
                tensors[f"{loss_set}.{fraction:g}.{k}"] = v
    save_bundled(ASSETS, tensors, config, name="heads")


if __name__ == "__main__":
    main()
