"""The PREVIOUS bundled FGSA model (a TinyViT pretrained here at 64x64, then frozen) and its
ablation. The bundled model is now FGSA on a frozen DINOv2-S: training/fgsa/train_dino.py. This
script is kept to reproduce the earlier design and its investigation runs; its `card` stage
writes into training/checkpoints/fgsa/toy_assets/ (not assets/fgsa/).

    python -m training.fgsa.train --seed 0            # everything (backbone, 4 variants x 3 seeds, card)
    python -m training.fgsa.train --stage backbone    # only pretrain the frozen TinyViT
    python -m training.fgsa.train --stage ablate --variants fgsa --seeds 0
    python -m training.fgsa.train --stage card        # assets + training log from finished runs, then the figures

Every run checkpoints under training/checkpoints/fgsa/ and resumes where it stopped; a finished
run is not repeated. One torch thread (the machine is shared); CPU seconds are process time.
The `card` stage writes the weights, the examples and the training log `ablation.json`
(`training.fgsa.card`) into `ASSETS` (training/checkpoints/fgsa/toy_assets/).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from adapters.common.weights import count_params, save_bundled
from adapters.fgsa.data import make_dataset
from adapters.fgsa.loading import save_adapter
from adapters.fgsa.metrics import sod_metrics
from adapters.fgsa.modeling import VARIANTS, FGSAConfig, FGSANet, TinyViT, TinyViTConfig, structure_loss

REPO = Path(__file__).resolve().parents[2]
CKPT = REPO / "training" / "checkpoints" / "fgsa"
ASSETS = REPO / "training" / "checkpoints" / "fgsa" / "toy_assets"
SIZE = 64
TRAIN = dict(seed=1000, n=1536, modes=("camouflage", "spectral"))
TEST = dict(seed=2000, n=256, modes=("camouflage", "spectral"))
PRETRAIN = dict(seed=3000, n=2048, modes=("salient",))
BACKBONE_STEPS, BACKBONE_BATCH = 600, 32
STEPS, BATCH = 500, 16
LR, BACKBONE_LR = 1e-3, 2e-4
# Zero-initialised gates (every `gamma`) learn 100x faster and without weight decay: at the common
# rate they stayed near 0.03 after 500 steps and FGSAttn had no measurable effect (see the card).
GATE_LR = 1e-1


def dataset(spec: dict):
    images, masks, modes = make_dataset(spec["seed"], spec["n"], spec["modes"], SIZE)
    return torch.from_numpy(images), torch.from_numpy(masks), modes


def cosine(step: int, total: int, warmup: int = 30) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


class PretrainHead(torch.nn.Module):
    """Token -> its patch of mask logits (pixel shuffle); discarded after pretraining."""

    def __init__(self, dim: int, patch: int):
        super().__init__()
        self.linear, self.patch = torch.nn.Linear(dim, patch * patch), patch

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = tokens.shape
        logits = self.linear(tokens).view(b, h, w, self.patch, self.patch)
        return logits.permute(0, 1, 3, 2, 4).reshape(b, 1, h * self.patch, w * self.patch)


def _save_ckpt(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _loop(path: Path, modules: dict, optimiser, steps: int, batch_fn, loss_fn, log_every: int = 100) -> float:
    """Train with resumable checkpoints; returns the CPU seconds of the whole run (all resumes)."""
    step, cpu = 0, 0.0
    if path.is_file():
        state = torch.load(path, weights_only=False)
        for name, module in modules.items():
            module.load_state_dict(state[name])
        optimiser.load_state_dict(state["optimiser"])
        step, cpu = state["step"], state["cpu_seconds"]
        torch.set_rng_state(state["rng"])
        print(f"resumed {path.name} at step {step}")
    base_lrs = [g.get("base_lr", g["lr"]) for g in optimiser.param_groups]
    for g, lr in zip(optimiser.param_groups, base_lrs):
        g["base_lr"] = lr
    start = time.process_time()
    for module in modules.values():
        module.train()
    while step < steps:
        for g in optimiser.param_groups:
            g["lr"] = g["base_lr"] * cosine(step, steps)
        loss = loss_fn(*batch_fn(step))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        if step % log_every == 0 or step == steps:
            elapsed = cpu + time.process_time() - start
            print(f"{path.stem} step {step}/{steps} loss {loss.item():.4f} cpu {elapsed:.0f}s", flush=True)
            state = {name: m.state_dict() for name, m in modules.items()}
            _save_ckpt(path, state | dict(optimiser=optimiser.state_dict(), step=step, cpu_seconds=elapsed, rng=torch.get_rng_state()))
    return cpu + time.process_time() - start


def backbone_path() -> Path:
    return CKPT / "backbone.safetensors"


def pretrain_backbone(seed: int = 0) -> None:
    """TinyViT trained to segment *salient* synthetic objects, then frozen for every variant."""
    if backbone_path().is_file():
        print("backbone already pretrained")
        return
    torch.manual_seed(seed)
    config = TinyViTConfig(image_size=SIZE)
    vit, head = TinyViT(config), PretrainHead(config.dim, config.patch)
    images, masks, _ = dataset(PRETRAIN)
    mean = torch.tensor(config.mean).view(1, 3, 1, 1)
    std = torch.tensor(config.std).view(1, 3, 1, 1)
    optimiser = torch.optim.AdamW(list(vit.parameters()) + list(head.parameters()), lr=1e-3, weight_decay=0.05)
    def batch(step):
        # indices depend on the step only, so a resumed run sees the same batches
        idx = torch.randint(0, len(images), (BACKBONE_BATCH,), generator=torch.Generator().manual_seed(seed * 100_003 + step))
        x = images[idx]
        if step % 2:
            x, m = x.flip(-1), masks[idx].flip(-1)
        else:
            m = masks[idx]
        return (x - mean) / std, m

    cpu = _loop(CKPT / "backbone.pt", {"vit": vit, "head": head}, optimiser, BACKBONE_STEPS, batch,
                lambda x, m: structure_loss(head(vit(x)), m))
    vit.eval()
    save_bundled(CKPT, vit.state_dict(), {**config.__dict__, "pretrain_cpu_seconds": cpu, "pretrain_steps": BACKBONE_STEPS,
                                          "pretrain_data": PRETRAIN | {"modes": list(PRETRAIN["modes"])}}, name="backbone")


def load_backbone() -> tuple[TinyViT, dict]:
    from adapters.common.weights import read_bundled
    from adapters.fgsa.loading import tiny_vit_from

    tensors, config = read_bundled(CKPT, "backbone")
    return tiny_vit_from(tensors, config), config


def build(variant: str, seed: int, **overrides) -> FGSANet:
    torch.manual_seed(seed)
    vit, _ = load_backbone()
    return FGSANet(vit, FGSAConfig(variant=variant, **overrides))


@torch.no_grad()
def evaluate(model: FGSANet, images: torch.Tensor, masks: torch.Tensor, modes: list[str], gains=None, batch: int = 64) -> dict:
    model.eval()
    probs = torch.cat([model(images[i:i + batch], gains=gains).sigmoid() for i in range(0, len(images), batch)])
    probs, gts = probs[:, 0].numpy(), masks[:, 0].numpy()
    result = {"all": sod_metrics(probs, gts)}
    for mode in sorted(set(modes)):
        pick = [i for i, m in enumerate(modes) if m == mode]
        result[mode] = sod_metrics(probs[pick], gts[pick])
    return result


def run_name(variant: str, seed: int, tag: str = "") -> str:
    return f"{variant}{tag}_s{seed}"


def train_variant(variant: str, seed: int, steps: int = STEPS, tag: str = "", gate_lr: float = GATE_LR, **overrides) -> dict:
    """Train one variant from one seed on camouflage + spectral scenes and score the test set."""
    runs = CKPT / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    name = run_name(variant, seed, tag)
    result_path = runs / f"{name}_result.json"
    if result_path.is_file():
        return json.loads(result_path.read_text())
    model = build(variant, seed, **overrides)
    images, masks, _ = dataset(TRAIN)
    new = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups = [{"params": [p for n, p in new if not n.endswith("gamma")], "lr": LR},
              {"params": [p for n, p in new if n.endswith("gamma")], "lr": gate_lr, "weight_decay": 0.0}]
    if variant == "full":
        groups.append({"params": list(model.backbone.parameters()), "lr": BACKBONE_LR})
    groups = [g for g in groups if g["params"]]
    optimiser = torch.optim.AdamW(groups, weight_decay=0.01)
    def batch(step):
        idx = torch.randint(0, len(images), (BATCH,), generator=torch.Generator().manual_seed((10_000 + seed) * 100_003 + step))
        x, m = images[idx], masks[idx]
        if step % 2:
            x, m = x.flip(-1), m.flip(-1)
        return x, m

    cpu = _loop(runs / f"{name}.pt", {"model": model}, optimiser, steps, batch, lambda x, m: structure_loss(model(x), m))
    test_images, test_masks, test_modes = dataset(TEST)
    result = dict(
        variant=variant, seed=seed, tag=tag, steps=steps, gate_lr=gate_lr if variant in ("conv", "fgsa") else None, overrides=overrides,
        trainable_params=count_params(model, trainable=True), frozen_params=count_params(model.backbone),
        cpu_seconds=cpu, metrics=evaluate(model, test_images, test_masks, test_modes),
    )
    save_adapter(runs, model, name, extra={"run": result})
    result_path.write_text(json.dumps(result, indent=2))
    print(name, json.dumps(result["metrics"]["all"]))
    return result


INVESTIGATIONS = {
    # how FGSAttn's filtered map is normalised and applied, how its ring gains start, where it sits,
    # how fast its gate opens (see "Findings" in the model card); the number is how many seeds run
    "-minmax": (dict(fgsa_mode="minmax", ring_init="linear"), 3),
    "-scaled": (dict(fgsa_mode="scaled", ring_init="linear"), 3),
    "-centred-linear": (dict(fgsa_mode="centred", ring_init="linear"), 2),
    "-filter": (dict(fgsa_mode="filter", ring_init="linear"), 1),
    "-gate-lr-1e-3": (dict(gate_lr=LR, fgsa_mode="minmax", ring_init="linear"), 1),
    "-gate-lr-1e-2": (dict(gate_lr=1e-2, fgsa_mode="minmax", ring_init="linear"), 1),
    "-c1-only": (dict(fgsa_conv_levels=(1,), fgsa_tokens=False, fgsa_mode="minmax", ring_init="linear"), 1),
}


def investigate(seeds) -> None:
    for tag, (settings, n_seeds) in INVESTIGATIONS.items():
        for seed in seeds[:n_seeds]:
            train_variant("fgsa", seed, tag=tag, **settings)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("all", "backbone", "ablate", "investigate", "card"), default="all")
    parser.add_argument("--seed", type=int, default=0, help="seed of the backbone and of the bundled adapter")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    CKPT.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "backbone"):
        pretrain_backbone(args.seed)
    if args.stage in ("all", "ablate"):
        for seed in args.seeds:
            for variant in args.variants:
                train_variant(variant, seed)
    if args.stage in ("all", "investigate"):
        investigate(args.seeds)
    if args.stage in ("all", "card"):
        from training.fgsa.card import write_card

        write_card(bundled_seed=args.seed)


if __name__ == "__main__":
    main()
