"""Train the bundled image-to-video models from a seed, stage by stage, on videos made from real
photographs (`adapters.i2v.photos`: camera pans and zooms, cut-out objects over other photos).

    python -m training.i2v.train --seed 0            # every stage, resuming where it stopped
    python -m training.i2v.train --stage motion      # one stage (earlier stages must be done)

Stages, each trained with everything before it frozen (as in AnimateDiff and I2V-Adapter):
  1. vae     patch autoencoder on single frames (64x64 -> 16x16x8; adapters/i2v/vae.py)
  2. unet    tiny text-to-image UNet2DConditionModel on single frames + captions
             (the CLIP text encoder stays at its seeded random initialisation and is never trained)
  3. motion  AnimateDiff-style MotionAdapter on 8-frame clips, VAE/text/UNet frozen
  4. i2v     the I2V-Adapter branch (query + zero-init output projection in every spatial
             self-attention) on clips whose frame 0 stays clean, everything else frozen

Each stage checkpoints to training/checkpoints/i2v/<stage>.pt every few minutes and resumes from
it; the batch at step k is drawn from (seed, stage, k), so an interrupted run gives the same
weights as an uninterrupted one. Single-threaded by default (the machine is shared).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from adapters.i2v.config import NUM_FRAMES
from adapters.i2v.photos import clip_batch
from adapters.i2v.loading import encode_text, new_components, write_tokenizer
from adapters.i2v.modeling import diffusion_loss, encode_latents, to_pixels, unet_to_frames, video_to_unet

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "assets" / "i2v"
CHECKPOINTS = REPO / "training" / "checkpoints" / "i2v"
STAGES = ("vae", "unet", "motion", "i2v")
# "sft" (training/i2v/train_edg.py) fine-tunes the finished stack; it draws its batches after these
STAGE_IDS = {name: i for i, name in enumerate((*STAGES, "sft"))}
# 46.5 CPU minutes in all at 64 px on one thread (measured per step: vae 0.12 s at 16 frames, unet 0.7 s
# at 16 frames, motion 1.3 s, i2v 1.5 s and sft 1.4 s at 4 clips)
STEPS = {"vae": 600, "unet": 700, "motion": 700, "i2v": 400, "sft": 500}
BATCH = {"vae": 16, "unet": 16, "motion": 4, "i2v": 4, "sft": 4}
LR = {"vae": 2e-3, "unet": 2e-3, "motion": 1e-3, "i2v": 3e-3, "sft": 1e-3}
CAPTION_DROPOUT = 0.1  # empty captions teach the unconditional branch classifier-free guidance uses
CHECKPOINT_EVERY_S = 120


def learning_rate(stage: str, step: int) -> float:
    warmup = 50
    total = STEPS[stage]
    if step < warmup:
        return LR[stage] * (step + 1) / warmup
    return LR[stage] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1))))


def batch_rng(seed: int, stage: str, step: int) -> tuple[np.random.Generator, torch.Generator]:
    key = [seed, STAGE_IDS[stage], step]
    gen = torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))
    return np.random.default_rng(key), gen


def drop_captions(captions: list[str], rng: np.random.Generator) -> list[str]:
    return ["" if rng.random() < CAPTION_DROPOUT else c for c in captions]


class Stage:
    """One resumable training stage: its trainable parameters, a step function, a checkpoint."""

    def __init__(self, name: str, params: list[torch.nn.Parameter], state_module: torch.nn.Module, seed: int):
        self.name, self.params, self.module, self.seed = name, params, state_module, seed
        self.optimizer = torch.optim.AdamW(params, lr=LR[name], weight_decay=1e-4)
        self.step, self.losses, self.cpu_seconds = 0, [], 0.0
        self.path = CHECKPOINTS / f"{name}.pt"

    def resume(self) -> None:
        if self.path.is_file():
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            self.module.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.step, self.losses, self.cpu_seconds = state["step"], list(state["losses"]), state["cpu_seconds"]
            print(f"[{self.name}] resumed at step {self.step}")

    def save(self) -> None:
        CHECKPOINTS.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        torch.save({"model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(), "step": self.step,
                    "losses": self.losses, "cpu_seconds": self.cpu_seconds}, tmp)
        tmp.replace(self.path)

    def run(self, loss_fn) -> None:
        self.resume()
        last_save, started = time.time(), time.process_time()
        base_cpu = self.cpu_seconds
        while self.step < STEPS[self.name]:
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(self.name, self.step)
            rng, gen = batch_rng(self.seed, self.name, self.step)
            loss = loss_fn(rng, gen)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.losses.append(float(loss.detach()))
            self.step += 1
            self.cpu_seconds = base_cpu + time.process_time() - started
            if self.step % 50 == 0:
                print(f"[{self.name}] step {self.step}/{STEPS[self.name]} loss {np.mean(self.losses[-50:]):.4f} "
                      f"cpu {self.cpu_seconds:.0f}s", flush=True)
            if time.time() - last_save > CHECKPOINT_EVERY_S:
                self.save()
                last_save = time.time()
        self.save()


def load_stage_weights(module: torch.nn.Module, stage: str) -> None:
    path = CHECKPOINTS / f"{stage}.pt"
    if not path.is_file():
        raise SystemExit(f"stage '{stage}' has not been trained yet (no {path})")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["step"] < STEPS[stage]:
        raise SystemExit(f"stage '{stage}' stopped at step {state['step']} of {STEPS[stage]}: run it first")
    module.load_state_dict(state["model"])


def finished(stages: list[str], stage: str) -> bool:
    """Stop after `stage` when nothing later was asked for and the bundle cannot be exported yet."""
    later = STAGES[STAGES.index(stage) + 1:]
    return not any(s in stages for s in later) and not (CHECKPOINTS / "i2v.pt").is_file()


def train(seed: int, stages: list[str]) -> dict:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)  # the clips are warped on the same single thread as training
    tokenizer_dir = OUT / "tokenizer"
    write_tokenizer(tokenizer_dir)
    c = new_components(seed, tokenizer_dir)
    vae, text_encoder, unet, motion, scheduler = c["vae"], c["text_encoder"], c["unet"], c["motion_adapter"], c["scheduler"]
    text_encoder.requires_grad_(False)
    log: dict = {}

    def remember(stage: Stage) -> None:
        log[stage.name] = {"steps": stage.step, "cpu_seconds": round(stage.cpu_seconds, 1),
                           "final_loss": float(np.mean(stage.losses[-50:]))}

    # 1. VAE
    if "vae" in stages:
        # the linear code starts at the principal components of training patches (a resumed
        # stage overwrites this with its checkpoint)
        frames, _ = clip_batch(np.random.default_rng([seed, 98]), 256, frames=1)
        vae.init_from_patches(to_pixels(frames))
        vae.requires_grad_(True)

        def vae_loss(rng, gen):
            frames, _ = clip_batch(rng, BATCH["vae"] // 4)
            x = to_pixels(frames[:, rng.choice(NUM_FRAMES, 4, replace=False)])
            dist = vae.encode(x).latent_dist
            z = dist.mean + dist.std * torch.randn(dist.mean.shape, generator=gen)
            recon = vae.decode(z).sample
            return F.l1_loss(recon, x) + F.mse_loss(recon, x) + 1e-6 * dist.kl().mean()

        stage = Stage("vae", list(vae.parameters()), vae, seed)
        stage.run(vae_loss)
        remember(stage)
    load_stage_weights(vae, "vae")
    vae.requires_grad_(False).eval()
    with torch.no_grad():  # latents of unit variance, as diffusion expects
        frames, _ = clip_batch(np.random.default_rng([seed, 99]), 32)
        spread = float(vae.encode(to_pixels(frames)).latent_dist.mean.std())
    vae.register_to_config(scaling_factor=1.0 / spread)
    if finished(stages, "vae"):
        return log

    # 2. text-to-image UNet
    if "unet" in stages:
        unet.requires_grad_(True)

        def unet_loss(rng, gen):
            # single frames: a clip's first frame is as random a view of its photo as any later one
            frames, captions = clip_batch(rng, BATCH["unet"], frames=1)
            x = to_pixels(frames)
            latents = encode_latents(vae, x, gen)
            text = encode_text(tokenizer=c["tokenizer"], text_encoder=text_encoder, prompts=drop_captions(captions, rng))
            return diffusion_loss(lambda z, t: unet(z, t, text).sample, latents, scheduler, gen)

        stage = Stage("unet", list(unet.parameters()), unet, seed)
        stage.run(unet_loss)
        remember(stage)
    load_stage_weights(unet, "unet")
    unet.requires_grad_(False).eval()
    if finished(stages, "unet"):
        return log

    # 3. motion module, UNet frozen
    from diffusers import UNetMotionModel

    motion_unet = UNetMotionModel.from_unet2d(unet, motion)
    motion_unet.requires_grad_(False)

    def video_batch(rng, gen, size):
        frames, captions = clip_batch(rng, size)
        latents = encode_latents(vae, to_pixels(frames), gen)
        text = encode_text(c["tokenizer"], text_encoder, drop_captions(captions, rng)).repeat_interleave(NUM_FRAMES, 0)
        return latents, text

    def motion_forward(text):
        return lambda z, t: unet_to_frames(motion_unet(video_to_unet(z, NUM_FRAMES), t, text).sample)

    if "motion" in stages:
        motion_params = [p for n, p in motion_unet.named_parameters() if "motion_modules" in n]
        for p in motion_params:
            p.requires_grad_(True)

        def motion_loss(rng, gen):
            latents, text = video_batch(rng, gen, BATCH["motion"])
            return diffusion_loss(motion_forward(text), latents, scheduler, gen, frames=NUM_FRAMES)

        stage = Stage("motion", motion_params, motion_unet, seed)
        stage.run(motion_loss)
        remember(stage)
        motion_unet.requires_grad_(False)
    load_stage_weights(motion_unet, "motion")
    motion.load_state_dict({k: v for k, v in motion_unet.state_dict().items() if "motion_modules" in k})
    if finished(stages, "motion"):
        return log

    # 4. I2V-Adapter branch, everything else frozen
    from adapters.i2v import modeling as i2v

    adapter = i2v.install_i2v_adapter(motion_unet, seed=seed)
    if "i2v" in stages:
        adapter.requires_grad_(True)

        def i2v_loss(rng, gen):
            latents, text = video_batch(rng, gen, BATCH["i2v"])
            with i2v.i2v_context(num_frames=NUM_FRAMES, scale=1.0):
                return diffusion_loss(motion_forward(text), latents, scheduler, gen, keep_first=True, frames=NUM_FRAMES)

        stage = Stage("i2v", list(adapter.parameters()), adapter, seed)
        stage.run(i2v_loss)
        remember(stage)
    load_stage_weights(adapter, "i2v")

    from adapters.i2v.loading import save_bundle

    save_bundle(OUT, vae=vae, text_encoder=text_encoder, unet=unet, motion_adapter=motion, adapter=adapter,
                scheduler=scheduler)
    return log


EXAMPLES = (  # held-out photographs, so the examples show generalisation: (photo, move, motion strength)
    ("chelsea", "pan", "left", 0.5),
    ("coffee", "zoom", "in", 0.75),
    ("flower", "pan", "up", 1.0),
    ("chelsea", "pan", "right", 0.25),
)


def write_examples(out: Path, seed: int = 7, upscale: int = 2) -> None:
    """First frames of camera moves over held-out photographs, upscaled (nearest) to 128 px: the
    tab's examples. The upload box area-averages them back to exactly these 64 px frames."""
    from PIL import Image

    from adapters.i2v.photos import camera_clip

    folder = out / "examples"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    rng = np.random.default_rng(seed)
    rows = []
    for name, kind, direction, strength in EXAMPLES:
        clip = camera_clip(rng, name, kind=kind, direction=direction, speed="slowly")
        frame = (clip.frames[0] * 255 + 0.5).astype(np.uint8).repeat(upscale, 0).repeat(upscale, 1)
        file = f"{name}_{kind}_{direction}.png"
        Image.fromarray(frame).save(folder / file)
        rows.append({"image": file, "prompt": clip.caption, "motion_strength": strength})
    (folder / "examples.json").write_text(json.dumps(rows, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=(*STAGES, "all"), default="all")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="smoke tests only: fewer steps")
    parser.add_argument("--checkpoints", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--examples-only", action="store_true", help="only (re)write the tab's example images")
    args = parser.parse_args(argv)
    global CHECKPOINTS, OUT
    CHECKPOINTS, OUT = args.checkpoints or CHECKPOINTS, args.out or OUT
    for name in STEPS:
        STEPS[name] = max(1, int(STEPS[name] * args.steps_scale))
    write_examples(OUT)
    if args.examples_only:
        return
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    started = time.time()
    log = train(args.seed, stages)
    log_path = CHECKPOINTS / "training_log.json"
    previous = json.loads(log_path.read_text()) if log_path.is_file() else {}
    previous.update(log)
    log_path.write_text(json.dumps(previous, indent=2))
    if (OUT / "i2v_adapter.safetensors").is_file():  # the model card reads the stage costs from here
        (OUT / "training_log.json").write_text(json.dumps({s: previous[s] for s in STAGES if s in previous}, indent=2) + "\n")
    print(json.dumps(previous, indent=2))
    print(f"wall {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
