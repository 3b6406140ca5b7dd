"""Train the MMA adapters (LaVIN's mixture-of-modality adaptation) on the small VLM.

    python -m training.mma.train projector --seed 0            # the VLM alone (training/vlm/train.py)
    python -m training.mma.train targets                       # the frozen model's answers to text prompts
    python -m training.mma.train adapter --variant routed --phase 1 --seed 0
    python -m training.mma.train adapter --variant plain --phase 1 --seed 0   # ablation: no router
    python -m training.mma.train adapter --variant routed --seed 0            # phase 2 (the shipped files)
    python -m training.mma.train adapter --variant plain --seed 0
    python -m training.mma.train export --variant routed --seed 0   # write the assets of the last checkpoint
    python -m training.mma.train all --seed 0

Frozen: DINOv2-S and SmolLM2-135M-Instruct (its patches are cached by training/vlm/train.py). As in
LLaVA's second stage, the adapters (every LM layer, before attention: shared down-projection, two
zero-initialised up-projections, router; plus the two modality tokens) are trained on top of the
VLM's stage-1 projector, which stays frozen here (LaVIN trains its projector jointly; freezing it
makes "adapters off" exactly the projector-only model, so the figures compare adapters vs none
and nothing else). Each step draws image questions from the projector run's generator plus
text-only instructions (`adapters.mma.data`) whose targets are the frozen model's own greedy
answers.

Two phases. Phase 1 (STEPS, from fresh adapters): answer-only cross-entropy on both, summed, the
modality token alone at position 0. Phase 2 (PHASE2_STEPS, from phase 1's adapters; the shipped
files): the text-only rows are distilled, KL(frozen || adapted) over the whole next-token
distribution with the frozen logits from the same LM with the adapters off, PHASE2_TEXT_ROWS per
step and weighted TEXT_WEIGHT; the routed variant's modality token runs after the chat template's
first token (`MMAConfig.modality_prefix`: position 0 is an attention sink that hides the modality
from the router), its two up-projections are split apart (`split_paths`) and its router learns at
PHASE2_ROUTER_LR. The plain variant gets the same phase 2 (steps, data, losses, adapter learning
rate); only the router differs. With no phase-1 checkpoint at hand, phase 2 of seed 0 starts from
the phase-1 files as shipped at PHASE1_COMMIT.

One CPU thread, float32 (bfloat16 autocast ran about 40 times slower than float32 on a CPU without
native bfloat16, AVX2 only), resumable and deterministic from the seed (a checkpoint every few
minutes with dropout's generator state; SIGTERM stops after the current step, saves and exports);
CPU seconds go to assets/mma/mma_training_log.json.

Files: assets/mma/mma_adapter.safetensors (routed) and assets/mma/mma_plain_adapter.safetensors
(the ablation), each with a copy of the stage-1 projector it was trained on; that projector
assets/mma/vlm_projector.safetensors comes from training/vlm/train.py (stage ``projector`` here).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import numpy as np
import torch

from adapters.mma import data as text_data
from adapters.mma.config import MMAConfig
from adapters.mma.loading import ADAPTER_FILE, PLAIN_FILE, save_mma, wrap
from adapters.mma.modeling import IMAGE, MMA, TEXT, batch_loss, distill_loss
from adapters.vlm.modeling import Projector, ProjectorConfig, pool_patches
from training.vlm import train as vlm_train
from training.vlm.train import stop_on_signal

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "assets" / "mma"
CHECKPOINTS = REPO / "training" / "checkpoints" / "mma"
VLM_CHECKPOINTS = REPO / "training" / "checkpoints" / "vlm"
LOG = ASSET_DIR / "mma_training_log.json"
TEXT_TARGETS = CHECKPOINTS / "text_targets.json"
TARGET_TOKENS = 32
TEXT_ROWS = 4  # text-only instructions per step, next to the image questions
ROUTER_LR = 1e-2
ADAPTER_LR = 2e-3
STEPS = 50
STEP_OFFSET = 10_000  # image draws disjoint from the projector run's, whose steps number far fewer
CPU_BUDGET_S = 40 * 60  # one thread of an AVX2-only CPU in float32; the issue allows 45


def cpu_seconds() -> float:
    return time.process_time()


def write_log(update: dict) -> None:
    log = json.loads(LOG.read_text()) if LOG.exists() else {}
    log.update(update)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(json.dumps(log, indent=1, sort_keys=True) + "\n")


def text_model():
    """The frozen LM and its chat layout (no vision part is needed: patches are cached)."""
    from adapters.vlm.model import VisionLanguageModel
    from adapters.zoo import load_smollm2

    lm, tokenizer = load_smollm2()
    return VisionLanguageModel(lm, tokenizer, Projector(ProjectorConfig(grid=vlm_train.GRID)), None, None)


def targets() -> None:
    """The frozen model's greedy answers to the training text prompts, as token ids (the held-out
    prompts are answered by the bench itself)."""
    torch.set_num_threads(1)
    if TEXT_TARGETS.exists():
        return
    vlm = text_model()
    start, prompts, answers = cpu_seconds(), text_data.prompts("train"), []
    for lo in range(0, len(prompts), 16):
        chunk = prompts[lo:lo + 16]
        answers += vlm.answer(chunk, [None] * len(chunk), max_new=TARGET_TOKENS)
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    TEXT_TARGETS.write_text(json.dumps({"train": [{"prompt": p, "answer_ids": a} for p, a in zip(prompts, answers)]}))
    write_log({"targets_cpu_s": round(cpu_seconds() - start, 1)})


def text_row(layout, prompt: str, answer_ids: list[int]):
    ids, slot, labels = layout.encode([(prompt, None)], 0)
    a = list(answer_ids) + [layout.end_id]
    return ids + a, slot, labels + a


PHASE2_STEPS = 60
PHASE2_TEXT_ROWS = 8  # text-only instructions per step in phase 2
PHASE2_ADAPTER_LR = 2e-4
PHASE2_ROUTER_LR = 5e-2
TEXT_WEIGHT = 2.0  # phase 2: weight of the text rows' distillation loss next to the image rows' cross-entropy
PHASE1_COMMIT = "27412a8"  # the phase-1 adapter files, as shipped, when no phase-1 checkpoint is at hand


def phase1_state(variant: str, seed: int) -> dict:
    """The phase-1 adapters phase 2 starts from: the phase-1 checkpoint, else the file shipped at
    PHASE1_COMMIT (phase 1 of seed 0)."""
    ckpt = CHECKPOINTS / f"{variant}_seed{seed}.pt"
    if ckpt.exists():
        return torch.load(ckpt)["mma"]
    if seed != 0:
        raise FileNotFoundError(f"phase 2 of seed {seed} needs the phase-1 checkpoint {ckpt}")
    import io
    import subprocess

    from safetensors.torch import load

    name = ADAPTER_FILE if variant == "routed" else PLAIN_FILE
    blob = subprocess.run(["git", "show", f"{PHASE1_COMMIT}:assets/mma/{name}"], cwd=REPO, check=True,
                          capture_output=True).stdout
    state = load(io.BytesIO(blob).getvalue())
    return {k: v for k, v in state.items() if not k.startswith("projector.")}


@torch.no_grad()
def split_paths(mma: MMA) -> None:
    """Phase 1 left each layer's two up-projections equal (cosine 0.99+): both start at zero and get
    the same gradient up to the route weight, which Adam's per-parameter scaling cancels, so the
    router had nothing to choose between. Phase 2 therefore starts path 0 as their sum, path 1 at
    zero (a fresh path, as LaVIN initialises it) and the router at zero (w = 0.5 / 0.5 for both
    modalities): the adapted model starts as phase 1's, up to phase 1's route weights, and the
    router decides which modality takes which path."""
    for a in mma.adapters.values():
        a.up[0].weight += a.up[1].weight
        a.up[0].bias += a.up[1].bias
        for p in (a.up[1].weight, a.up[1].bias, a.router.weight, a.router.bias):
            p.zero_()


def adapter(variant: str, seed: int, stop_after: int | None = None, phase: int = 1) -> None:
    """Phase 1 (the first shipped files): cross-entropy on image answers and on the frozen model's
    greedy text answers, the modality token alone at position 0. Phase 2 continues from phase 1:
    the text-only rows are distilled (KL(frozen || adapted) over the whole next-token distribution,
    the frozen logits from the same LM with the adapters off), PHASE2_TEXT_ROWS of them per step,
    and the routed variant's modality token runs after the chat template's first token (see
    `MMAConfig.modality_prefix`). The plain variant gets the same steps, data and losses."""
    torch.set_num_threads(1)
    torch.manual_seed(seed + 1000 * (phase - 1))
    vlm = text_model()
    from adapters.vlm.weights import PROJECTOR_FILE, load_projector

    routed = variant == "routed"
    prefix = vlm.tokenizer.convert_tokens_to_ids("<|im_start|>") if phase == 2 and routed else None
    bundle = wrap(vlm, MMA(MMAConfig(routed=routed, modality_prefix=prefix)), variant,
                  load_projector(ASSET_DIR / PROJECTOR_FILE).requires_grad_(False))
    mma, projector, lm, layout = bundle.mma, bundle.projector, bundle.lm, vlm.layout
    if phase == 2:
        mma.load_state_dict(phase1_state(variant, seed))
        if routed:
            split_paths(mma)
    mma.train()
    steps, text_rows_per_step = (STEPS, TEXT_ROWS) if phase == 1 else (PHASE2_STEPS, PHASE2_TEXT_ROWS)
    draw_offset = 0 if phase == 1 else STEPS  # phase 2 draws the scenes and prompts that come after phase 1's
    patches = torch.load(VLM_CHECKPOINTS / "patches_train.pt")
    texts = json.loads(TEXT_TARGETS.read_text())["train"]
    router = [p for n, p in mma.named_parameters() if n.startswith("modality") or ".router." in n]
    others = [p for n, p in mma.named_parameters() if not (n.startswith("modality") or ".router." in n)]
    adapter_lr = ADAPTER_LR if phase == 1 else PHASE2_ADAPTER_LR
    groups = [{"params": others, "lr": adapter_lr, "base": adapter_lr}]
    if router:
        router_lr = ROUTER_LR if phase == 1 else PHASE2_ROUTER_LR
        groups.append({"params": router, "lr": router_lr, "base": router_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    ckpt_path = checkpoint_path(variant, seed, phase)
    step, cpu_used, losses, text_losses = 0, 0.0, [], []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path)
        mma.load_state_dict(ckpt["mma"])
        opt.load_state_dict(ckpt["opt"])
        step, cpu_used, losses = ckpt["step"], ckpt["cpu_s"], ckpt["losses"]
        text_losses = ckpt.get("text_losses", [])
        if "rng" in ckpt:  # dropout's generator: a resumed run draws what an unbroken one would
            torch.set_rng_state(ckpt["rng"])
        print(f"resumed at step {step}", flush=True)
    pad = vlm.tokenizer.pad_token_id if vlm.tokenizer.pad_token_id is not None else layout.end_id
    k = projector.config.image_tokens
    start, last_save = cpu_seconds(), time.time()
    stop = stop_on_signal()

    def save():
        torch.save({"mma": mma.state_dict(), "projector": projector.state_dict(), "opt": opt.state_dict(),
                    "step": step, "cpu_s": cpu_used + cpu_seconds() - start, "losses": losses,
                    "text_losses": text_losses, "phase": phase, "config": mma.config.to_json(),
                    "rng": torch.get_rng_state()}, ckpt_path)

    last = min(steps, stop_after or steps)
    while step < last and cpu_used + cpu_seconds() - start < CPU_BUDGET_S and not stop:
        rng = np.random.default_rng([seed, STEP_OFFSET + draw_offset + step])
        index = rng.choice(len(patches), vlm_train.BATCH, replace=False)
        image_rows = [vlm_train.training_rows(rng, layout, int(i), k) for i in index]
        text_rng = np.random.default_rng([seed, draw_offset + step, 7])
        picks = text_rng.choice(len(texts), text_rows_per_step, replace=False)
        text_rows = [text_row(layout, texts[int(i)]["prompt"], texts[int(i)]["answer_ids"]) for i in picks]
        warm = min(1.0, (step + 1) / (20 if phase == 1 else 5))
        for group in opt.param_groups:
            group["lr"] = group["base"] * warm * 0.5 * (1 + math.cos(math.pi * step / steps))
        with torch.no_grad():
            image = projector(pool_patches(patches[torch.as_tensor(index)].float(), projector.config.grid))
        loss = batch_loss(lm, mma, bundle.state, image_rows, IMAGE, pad, image)
        loss.backward()
        total = float(loss.detach())
        if phase == 1:
            text_loss = batch_loss(lm, mma, bundle.state, text_rows, TEXT, pad, None)
            text_loss.backward()
        else:
            text_loss = distill_loss(lm, mma, bundle.state, text_rows, TEXT, pad)
            (TEXT_WEIGHT * text_loss).backward()
        total += float(text_loss.detach())
        torch.nn.utils.clip_grad_norm_(list(mma.parameters()), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(total, 4))
        text_losses.append(round(float(text_loss.detach()), 4))
        step += 1
        if step % 5 == 0:
            print(f"step {step} loss {np.mean(losses[-5:]):.3f} text {np.mean(text_losses[-5:]):.4f} "
                  f"cpu {cpu_used + cpu_seconds() - start:.0f}s", flush=True)
        if time.time() - last_save > 180:
            save()
            last_save = time.time()
    save()
    export(variant, seed, phase=phase)


def checkpoint_path(variant: str, seed: int, phase: int) -> Path:
    return CHECKPOINTS / (f"{variant}_seed{seed}.pt" if phase == 1 else f"{variant}_seed{seed}_phase{phase}.pt")


def export(variant: str, seed: int, checkpoint: str | None = None, phase: int = 1) -> None:
    """Write the adapter file of the latest checkpoint (or of ``checkpoint``) and its training record."""
    ckpt = torch.load(checkpoint or checkpoint_path(variant, seed, phase))
    phase = ckpt.get("phase", 1)
    config = MMAConfig.from_json(ckpt["config"]) if "config" in ckpt else MMAConfig(routed=variant == "routed")
    mma = MMA(config)
    mma.load_state_dict(ckpt["mma"])
    projector = Projector(ProjectorConfig(grid=vlm_train.GRID))
    projector.load_state_dict(ckpt["projector"])
    losses = ckpt["losses"]
    save_mma(mma.eval(), projector.eval(), ASSET_DIR / (ADAPTER_FILE if variant == "routed" else PLAIN_FILE),
             {"seed": str(seed), "steps": str(ckpt["step"]), "phase": str(phase)})
    record = {"steps": ckpt["step"], "planned_steps": STEPS if phase == 1 else PHASE2_STEPS,
              "text_rows": TEXT_ROWS if phase == 1 else PHASE2_TEXT_ROWS,
              "router_lr": ROUTER_LR if phase == 1 else PHASE2_ROUTER_LR,
              "adapter_lr": ADAPTER_LR if phase == 1 else PHASE2_ADAPTER_LR, "projector": "stage 1, frozen",
              "cpu_s": round(ckpt["cpu_s"], 1), "threads": 1, "precision": "float32",
              "loss_first10": round(float(np.mean(losses[:10])), 3),
              "loss_last10": round(float(np.mean(losses[-10:])), 3)}
    if phase == 2:
        text = ckpt.get("text_losses", [])
        from adapters.common.figures import cpu_description

        record["machine"] = cpu_description()
        if variant != "routed":
            del record["router_lr"]  # no router
        record |= {"text_loss": "KL(frozen || adapted), weight %g" % TEXT_WEIGHT,
                   "modality_prefix": config.modality_prefix,
                   "text_kl_first10": round(float(np.mean(text[:10])), 4),
                   "text_kl_last10": round(float(np.mean(text[-10:])), 4)}
    write_log({f"{variant}_seed{seed}" + ("" if phase == 1 else f"_phase{phase}"): record})
    print(f"exported {variant} phase {phase}: {ckpt['step']} steps, {ckpt['cpu_s']:.0f} CPU s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("projector", "targets", "adapter", "export", "all"))
    parser.add_argument("--variant", choices=("routed", "plain"), default="routed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps of the schedule (the shipped files ran the whole schedule)")
    parser.add_argument("--checkpoint", default=None, help="export: this checkpoint file instead of the latest")
    parser.add_argument("--phase", type=int, choices=(1, 2), default=2,
                        help="1: the first training from fresh adapters; 2 (the shipped files): continue from phase 1 "
                             "with distilled text rows and the routed variant's modality token after a prefix token")
    args = parser.parse_args(argv)
    if args.stage in ("projector", "all"):
        from training.vlm import train as vlm_train

        vlm_train.main(["all", "--seed", str(args.seed)] + (["--stop-after", str(args.stop_after)]
                                                             if args.stop_after else []))
    if args.stage in ("targets", "all"):
        targets()
    if args.stage == "adapter":
        adapter(args.variant, args.seed, args.stop_after, args.phase)
    if args.stage == "export":
        export(args.variant, args.seed, args.checkpoint, args.phase)
    if args.stage == "all":
        for phase in (1, 2):
            adapter("routed", args.seed, args.stop_after, phase)
            adapter("plain", args.seed, args.stop_after, phase)


if __name__ == "__main__":
    main()
