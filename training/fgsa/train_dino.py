"""Train FGSA around the frozen DINOv2-S/14 (adapters.zoo) on camouflage scenes cut from real
photographs (adapters.fgsa.scenes), on a CPU.

    python -m training.fgsa.train_dino --stage cache                     # frozen prefix tokens, once
    python -m training.fgsa.train_dino --stage train --variants fgsa --seeds 0 --steps 600
    python -m training.fgsa.train_dino --stage toy                       # the old 64x64 model on the held-out scenes
    python -m training.fgsa.train_dino --stage card --seed 0             # assets + training log

What is cached: the adapter interacts with blocks 8-11 only (`adapters.fgsa.dino.DINO_GROUPS`), so
blocks 0-7 compute the same tokens for every variant and every step. The `cache` stage runs them
once per scene and stores the token stream after block 7 (257 x 384 per scene, fp16) under
training/checkpoints/fgsa_dino/cache/ (git-ignored), in chunk files written atomically (a stopped
run resumes at the next chunk). Each training step then runs only blocks 8-11 (forward and
backward, their weights frozen) and the adapter. No augmentation (a flipped scene would need its
own cached tokens); the scenes are many instead. The fp16 cache rounds the frozen prefix's output;
evaluation (here and in bench/fgsa.py) recomputes the prefix in fp32 from the pixels.

Runs checkpoint every 50 steps (atomic replace) under training/checkpoints/fgsa_dino/runs/ and
resume where they stopped; a finished run is not repeated. One torch thread; CPU seconds are
process time, summed over resumes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from adapters.common.weights import count_params
from adapters.fgsa.dino import DINO_GROUPS, DinoBackbone, DinoFGSANet, dino_fgsa_config
from adapters.fgsa.loading import save_adapter
from adapters.fgsa.modeling import structure_loss
from adapters.fgsa.scenes import SIZE, make_dataset

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "training" / "checkpoints" / "fgsa_dino"
ASSETS = REPO / "assets" / "fgsa"
TRAIN = dict(seed=11_000, n=1200, split="train")
HELDOUT = dict(seed=12_000, n=200, split="heldout")
CHUNK = 100
STEPS, BATCH = 250, 8
LR = 1e-3
GATE_LR = 3e-2  # zero-initialised gates (every `gamma`): faster, no weight decay
VARIANTS = ("head", "conv", "fgsa")
BACKBONE = {"kind": "dinov2_small", "start": DINO_GROUPS[0][0], "image_size": SIZE}


def backbone() -> DinoBackbone:
    from adapters.zoo import load_dinov2_small

    model, _ = load_dinov2_small()
    return DinoBackbone(model, start=BACKBONE["start"], image_size=SIZE)


def dataset(spec: dict):
    images, masks, info = make_dataset(spec["seed"], spec["n"], spec["split"])
    return torch.from_numpy(images), torch.from_numpy(masks), info


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


@torch.no_grad()
def prefix_tokens(bb: DinoBackbone, images: torch.Tensor, batch: int = 16) -> torch.Tensor:
    mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
    std = torch.tensor(bb.std).view(1, 3, 1, 1)
    return torch.cat([bb.embed((images[i:i + batch] - mean) / std) for i in range(0, len(images), batch)])


def cache(spec: dict, bb: DinoBackbone | None = None) -> dict:
    """Prefix tokens of every scene of `spec`, fp16, in chunk files; returns the CPU seconds."""
    name = spec["split"]
    out = CKPT / "cache"
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / f"{name}.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {"cpu_seconds": 0.0}
    if meta.get("spec") not in (None, spec):
        raise SystemExit(f"{out} holds a cache for another data spec; delete it")
    images = None
    for start in range(0, spec["n"], CHUNK):
        path = out / f"{name}_{start:05d}.pt"
        if path.is_file():
            continue
        if images is None:
            images, _, _ = dataset(spec)
            bb = bb or backbone()
        t0 = time.process_time()
        tokens = prefix_tokens(bb, images[start:start + CHUNK]).half()
        _atomic_save(tokens, path)
        meta["cpu_seconds"] += time.process_time() - t0
        meta["spec"] = spec
        meta_path.write_text(json.dumps(meta, indent=2))
        print(f"cached {name} {start + len(tokens)}/{spec['n']} cpu {meta['cpu_seconds']:.0f}s", flush=True)
    meta["spec"] = spec
    meta_path.write_text(json.dumps(meta, indent=2))
    return meta


def load_cache(spec: dict) -> torch.Tensor:
    out = CKPT / "cache"
    return torch.cat([torch.load(out / f"{spec['split']}_{s:05d}.pt") for s in range(0, spec["n"], CHUNK)])


def build(variant: str, seed: int, bb: DinoBackbone | None = None, **overrides) -> DinoFGSANet:
    torch.manual_seed(seed)
    return DinoFGSANet(bb or backbone(), dino_fgsa_config(variant, **overrides))


@torch.no_grad()
def predict(model: DinoFGSANet, images: torch.Tensor, embedded: torch.Tensor | None = None, gains=None, batch: int = 16) -> torch.Tensor:
    """Probabilities N x S x S; `embedded` (cached prefix) is optional."""
    model.eval()
    outs = []
    for i in range(0, len(images), batch):
        emb = None if embedded is None else embedded[i:i + batch].float()
        outs.append(model(images[i:i + batch], gains=gains, embedded=emb).sigmoid()[:, 0])
    return torch.cat(outs)


def score(probs: torch.Tensor, masks: torch.Tensor, info: list[dict]) -> dict:
    from adapters.fgsa.metrics import sod_metrics

    p, g = probs.numpy(), masks[:, 0].numpy()
    out = {"all": sod_metrics(p, g)}
    for mode in sorted({i["mode"] for i in info}):
        pick = [k for k, i in enumerate(info) if i["mode"] == mode]
        out[mode] = sod_metrics(p[pick], g[pick])
    return out


def run_name(variant: str, seed: int) -> str:
    return f"{variant}_s{seed}"


def train_variant(variant: str, seed: int, steps: int = STEPS, bb: DinoBackbone | None = None, data=None) -> dict:
    from training.fgsa.train import _loop

    runs = CKPT / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    name = run_name(variant, seed)
    result_path = runs / f"{name}_result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    bb = bb or backbone()
    model = build(variant, seed, bb)
    images, masks, _ = data or dataset(TRAIN)
    tokens = load_cache(TRAIN)
    new = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    groups = [{"params": [p for n, p in new if not n.endswith("gamma")], "lr": LR},
              {"params": [p for n, p in new if n.endswith("gamma")], "lr": GATE_LR, "weight_decay": 0.0}]
    optimiser = torch.optim.AdamW([g for g in groups if g["params"]], weight_decay=0.01)

    def batch(step):
        # the step alone picks the batch, so a resumed run sees the same batches
        idx = torch.randint(0, len(images), (BATCH,), generator=torch.Generator().manual_seed((20_000 + seed) * 100_003 + step))
        return images[idx], tokens[idx].float(), masks[idx]

    wall = time.time()
    cpu = _loop(runs / f"{name}.pt", {"model": model}, optimiser, steps, batch,
                lambda x, e, m: structure_loss(model(x, embedded=e), m), log_every=50)
    held_images, held_masks, held_info = dataset(HELDOUT)
    t0 = time.process_time()
    metrics = score(predict(model, held_images, load_cache(HELDOUT)), held_masks, held_info)
    result = dict(variant=variant, seed=seed, steps=steps, batch=BATCH, lr=LR, gate_lr=GATE_LR,
                  trainable_params=count_params(model, trainable=True), frozen_params=count_params(model.backbone),
                  cpu_seconds=cpu, eval_cpu_seconds=time.process_time() - t0, wall_seconds_last_session=time.time() - wall,
                  metrics=metrics, backbone=BACKBONE, train=TRAIN, heldout=HELDOUT)
    save_adapter(runs, model, name, extra={"run": result, "backbone": BACKBONE})
    result_path.write_text(json.dumps(result, indent=2))
    print(name, json.dumps(metrics["all"]), flush=True)
    return result


def load_run(variant: str, seed: int, bb: DinoBackbone | None = None) -> DinoFGSANet:
    from adapters.common.weights import read_bundled
    from adapters.fgsa.loading import attach

    tensors, config = read_bundled(CKPT / "runs", run_name(variant, seed))
    return attach(bb or backbone(), tensors, config)


def load_results() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((CKPT / "runs").glob("*_result.json"))]


@torch.no_grad()
def score_toy() -> dict:
    """The previous bundled model (TinyViT at 64x64, trained here on 64x64 synthetic scenes) on the
    same held-out scenes: each image area-resized to 64x64, its mask upsampled back to 224x224 (as
    the tab did). Run while assets/fgsa still holds it; the result goes into the training log."""
    import torch.nn.functional as F

    from adapters.fgsa.loading import load_bundled

    bundle = load_bundled(ASSETS)
    if bundle.image_size != 64:
        raise SystemExit("assets/fgsa no longer holds the 64x64 TinyViT model")
    images, masks, info = dataset(HELDOUT)
    small = F.interpolate(images, size=(64, 64), mode="area")
    out = {}
    for name, model in (("adapter", bundle.adapter), ("frozen_head", bundle.frozen_head)):
        probs = F.interpolate(model.eval()(small).sigmoid(), size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        out[name] = score(probs, masks, info)
    (CKPT / "toy_on_heldout.json").write_text(json.dumps(out, indent=2))
    return out


def example_indices(info: list[dict]) -> list[int]:
    """The tab's examples, by a fixed rule (not by score): the first scale-mode held-out scene on
    each held-out photograph, then the first texture-mode one."""
    from adapters.fgsa.scenes import HELDOUT_TEXTURES

    picks = []
    for name in HELDOUT_TEXTURES:
        picks += [k for k, i in enumerate(info) if i["mode"] == "scale" and i["background"] == name][:1]
    return picks + [k for k, i in enumerate(info) if i["mode"] == "texture"][:1]


def write_examples(directory: Path, site: str = "c1") -> list[dict]:
    import cv2
    import numpy as np

    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.png"):
        old.unlink()
    images, masks, info = dataset(HELDOUT)
    items = []
    for n, k in enumerate(example_indices(info)):
        name = f"{n:02d}_{info[k]['mode']}_{info[k]['background']}"
        rgb = (images[k].numpy().transpose(1, 2, 0) * 255).round().astype(np.uint8)
        cv2.imwrite(str(directory / f"{name}.png"), rgb[:, :, ::-1])
        cv2.imwrite(str(directory / f"{name}_gt.png"), (masks[k, 0].numpy() * 255).astype(np.uint8))
        items.append({"image": f"{name}.png", "mask": f"{name}_gt.png", "heldout_index": k, **info[k], "site": site, "bands": [1.0] * 5})
    (directory / "examples.json").write_text(json.dumps(items, indent=2) + "\n")
    return items


def write_card(seed: int = 0) -> dict:
    """Copy the chosen seed's fgsa adapter and head baseline into assets/fgsa/ and write the
    training log assets/fgsa/dino_log.json (every run's figures and CPU time); then run
    `python -m bench.fgsa --write`."""
    for variant, target in (("fgsa", "adapter"), ("head", "frozen_head")):
        for suffix in (".safetensors", ".json"):
            shutil.copy(CKPT / "runs" / f"{run_name(variant, seed)}{suffix}", ASSETS / f"{target}{suffix}")
    caches = {split: json.loads((CKPT / "cache" / f"{split}.json").read_text()) for split in ("train", "heldout")}
    toy = CKPT / "toy_on_heldout.json"
    log = dict(bundled_seed=seed, runs=load_results(), toy=json.loads(toy.read_text()) if toy.is_file() else None, cache_cpu_seconds={k: v["cpu_seconds"] for k, v in caches.items()},
               backbone=BACKBONE, train=TRAIN, heldout=HELDOUT, steps=STEPS, batch=BATCH, lr=LR, gate_lr=GATE_LR)
    (ASSETS / "dino_log.json").write_text(json.dumps(log, indent=2) + "\n")
    write_examples(ASSETS / "examples")
    print(f"wrote the weights, examples and {ASSETS / 'dino_log.json'}; now run python -m bench.fgsa --write")
    return log


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("cache", "train", "toy", "card"), default="train")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bundled adapter (card stage)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--split", choices=("train", "heldout", "both"), default="both")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    CKPT.mkdir(parents=True, exist_ok=True)
    if args.stage == "cache":
        bb = backbone()
        for spec in ((TRAIN, HELDOUT) if args.split == "both" else (TRAIN if args.split == "train" else HELDOUT,)):
            cache(spec, bb)
    elif args.stage == "train":
        bb = backbone()
        data = dataset(TRAIN)
        for seed in args.seeds:
            for variant in args.variants:
                train_variant(variant, seed, args.steps, bb, data)
    elif args.stage == "toy":
        print(json.dumps(score_toy(), indent=2))
    else:
        write_card(args.seed)


if __name__ == "__main__":
    main()
