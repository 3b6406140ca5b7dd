"""Train the MMA adapters (LaVIN's mixture-of-modality adaptation) on the small VLM.

    python -m training.mma.train projector --seed 0            # the VLM alone (training/vlm/train.py)
    python -m training.mma.train targets                       # the frozen model's answers to text prompts
    python -m training.mma.train adapter --variant routed --seed 0
    python -m training.mma.train adapter --variant plain --seed 0   # ablation: no router
    python -m training.mma.train export --variant routed --seed 0   # write the assets of the last checkpoint
    python -m training.mma.train all --seed 0

Frozen: DINOv2-S and SmolLM2-135M-Instruct (its patches are cached by training/vlm/train.py). As in
LLaVA's second stage, the adapters (every LM layer, before attention: shared down-projection, two
zero-initialised up-projections, router; plus the two modality tokens) are trained on top of the
VLM's stage-1 projector, which stays frozen here (LaVIN trains its projector jointly; freezing it
makes "adapters off" exactly the projector-only model, so the figures compare adapters vs none
and nothing else). Each step draws image questions from the projector run's generator plus
text-only instructions (`adapters.mma.data`) whose targets are the frozen model's own greedy
answers; answer-only loss on both, summed. One CPU thread, float32 (bfloat16 autocast ran about 40 times slower
than float32 on a CPU without native bfloat16, AVX2 only), resumable (a checkpoint every
few minutes; SIGTERM stops after the current step, saves and exports); CPU seconds go to
assets/mma/mma_training_log.json.

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
from adapters.mma.modeling import IMAGE, MMA, TEXT, batch_loss
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


def adapter(variant: str, seed: int, stop_after: int | None = None) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    vlm = text_model()
    from adapters.vlm.weights import PROJECTOR_FILE, load_projector

    bundle = wrap(vlm, MMA(MMAConfig(routed=variant == "routed")), variant,
                  load_projector(ASSET_DIR / PROJECTOR_FILE).requires_grad_(False))
    mma, projector, lm, layout = bundle.mma, bundle.projector, bundle.lm, vlm.layout
    mma.train()
    patches = torch.load(VLM_CHECKPOINTS / "patches_train.pt")
    texts = json.loads(TEXT_TARGETS.read_text())["train"]
    router = [p for n, p in mma.named_parameters() if n.startswith("modality") or ".router." in n]
    others = [p for n, p in mma.named_parameters() if not (n.startswith("modality") or ".router." in n)]
    groups = [{"params": others, "lr": ADAPTER_LR, "base": ADAPTER_LR}]
    if router:
        groups.append({"params": router, "lr": ROUTER_LR, "base": ROUTER_LR})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    ckpt_path = CHECKPOINTS / f"{variant}_seed{seed}.pt"
    step, cpu_used, losses = 0, 0.0, []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path)
        mma.load_state_dict(ckpt["mma"])
        opt.load_state_dict(ckpt["opt"])
        step, cpu_used, losses = ckpt["step"], ckpt["cpu_s"], ckpt["losses"]
        print(f"resumed at step {step}", flush=True)
    pad = vlm.tokenizer.pad_token_id if vlm.tokenizer.pad_token_id is not None else layout.end_id
    k = projector.config.image_tokens
    start, last_save = cpu_seconds(), time.time()
    stop = stop_on_signal()

    def save():
        torch.save({"mma": mma.state_dict(), "projector": projector.state_dict(), "opt": opt.state_dict(),
                    "step": step, "cpu_s": cpu_used + cpu_seconds() - start, "losses": losses}, ckpt_path)

    last = min(STEPS, stop_after or STEPS)
    while step < last and cpu_used + cpu_seconds() - start < CPU_BUDGET_S and not stop:
        rng = np.random.default_rng([seed, STEP_OFFSET + step])
        index = rng.choice(len(patches), vlm_train.BATCH, replace=False)
        image_rows = [vlm_train.training_rows(rng, layout, int(i), k) for i in index]
        text_rng = np.random.default_rng([seed, step, 7])
        picks = text_rng.choice(len(texts), TEXT_ROWS, replace=False)
        text_rows = [text_row(layout, texts[int(i)]["prompt"], texts[int(i)]["answer_ids"]) for i in picks]
        warm = min(1.0, (step + 1) / 20)
        for group in opt.param_groups:
            group["lr"] = group["base"] * warm * 0.5 * (1 + math.cos(math.pi * step / STEPS))
        total = 0.0
        with torch.no_grad():
            image = projector(pool_patches(patches[torch.as_tensor(index)].float(), projector.config.grid))
        for rows, modality, embeds in ((image_rows, IMAGE, image), (text_rows, TEXT, None)):
            loss = batch_loss(lm, mma, bundle.state, rows, modality, pad, embeds)
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_(list(mma.parameters()), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(total, 4))
        step += 1
        if step % 5 == 0:
            print(f"step {step} loss {np.mean(losses[-5:]):.3f} cpu {cpu_used + cpu_seconds() - start:.0f}s", flush=True)
        if time.time() - last_save > 180:
            save()
            last_save = time.time()
    save()
    export(variant, seed)


def export(variant: str, seed: int, checkpoint: str | None = None) -> None:
    """Write the adapter file of the latest checkpoint (or of ``checkpoint``) and its training record."""
    ckpt = torch.load(checkpoint or CHECKPOINTS / f"{variant}_seed{seed}.pt")
    mma = MMA(MMAConfig(routed=variant == "routed"))
    mma.load_state_dict(ckpt["mma"])
    projector = Projector(ProjectorConfig(grid=vlm_train.GRID))
    projector.load_state_dict(ckpt["projector"])
    losses = ckpt["losses"]
    save_mma(mma.eval(), projector.eval(), ASSET_DIR / (ADAPTER_FILE if variant == "routed" else PLAIN_FILE),
             {"seed": str(seed), "steps": str(ckpt["step"])})
    write_log({f"{variant}_seed{seed}": {"steps": ckpt["step"], "planned_steps": STEPS,
                                         "text_rows": TEXT_ROWS, "router_lr": ROUTER_LR, "adapter_lr": ADAPTER_LR,
                                         "projector": "stage 1, frozen",
                                         "cpu_s": round(ckpt["cpu_s"], 1), "threads": 1, "precision": "float32",
                                         "loss_first10": round(float(np.mean(losses[:10])), 3),
                                         "loss_last10": round(float(np.mean(losses[-10:])), 3)}})
    print(f"exported {variant}: {ckpt['step']} steps, {ckpt['cpu_s']:.0f} CPU s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("projector", "targets", "adapter", "export", "all"))
    parser.add_argument("--variant", choices=("routed", "plain"), default="routed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps of the schedule (the shipped files ran the whole schedule)")
    parser.add_argument("--checkpoint", default=None, help="export: this checkpoint file instead of the latest")
    args = parser.parse_args(argv)
    if args.stage in ("projector", "all"):
        from training.vlm import train as vlm_train

        vlm_train.main(["all", "--seed", str(args.seed)] + (["--stop-after", str(args.stop_after)]
                                                             if args.stop_after else []))
    if args.stage in ("targets", "all"):
        targets()
    if args.stage == "adapter":
        adapter(args.variant, args.seed, args.stop_after)
    if args.stage == "export":
        export(args.variant, args.seed, args.checkpoint)
    if args.stage == "all":
        adapter("routed", args.seed, args.stop_after)
        adapter("plain", args.seed, args.stop_after)


if __name__ == "__main__":
    main()
