"""EDG's fine-tune (theta_sft) of the bundled image-to-video stack: the motion module plus a temporal
text adapter trained on captioned clips, everything else (VAE, text encoder, UNet, I2V-Adapter)
frozen, frame 0 clean and out of the loss as in the I2V stage.

    python -m training.i2v.train_edg --seed 0      # resumable (training/checkpoints/i2v/sft.pt)

Writes assets/i2v/edg_sft.safetensors (+ .json): the fine-tuned motion-module weights and the
adapter, which `adapters.i2v.edg` merges with the bundled (pretrained) motion module at request
time. The batch at step k is drawn from (seed, "sft", k), so a resumed run gives the same weights.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from adapters.common.weights import save_bundled
from adapters.i2v import edg
from adapters.i2v import modeling as i2v
from adapters.i2v.config import NUM_FRAMES
from adapters.i2v.photos import clip_batch
from adapters.i2v.loading import encode_text, load_bundled
from training.i2v import train as base

SFT_FILE = "edg_sft"


def train_sft(seed: int, out: Path) -> dict:
    import cv2

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    bundle = load_bundled(out)
    pipe = bundle.pipe
    unet, vae = pipe.unet, pipe.vae
    text_dim = pipe.text_encoder.config.hidden_size
    adapter = edg.install_temporal_text_adapter(unet, text_dim, seed=seed)
    motion_params = [p for n, p in unet.named_parameters() if edg.MOTION_KEY in n and ".processor." not in n]
    for p in (*motion_params, *adapter.parameters()):
        p.requires_grad_(True)
    holder = torch.nn.ModuleDict({"unet": unet, "text_adapter": adapter})
    scheduler = pipe.scheduler

    def sft_loss(rng, gen):
        frames, captions = clip_batch(rng, base.BATCH["sft"])
        latents = i2v.encode_latents(vae, i2v.to_pixels(frames), gen)
        clip_text = encode_text(pipe.tokenizer, pipe.text_encoder, base.drop_captions(captions, rng))
        text = clip_text.repeat_interleave(NUM_FRAMES, 0)

        def forward(z, t):
            return i2v.unet_to_frames(unet(i2v.video_to_unet(z, NUM_FRAMES), t, text).sample)

        with i2v.i2v_context(NUM_FRAMES, 1.0), edg.temporal_text_context(clip_text):
            return i2v.diffusion_loss(forward, latents, scheduler, gen, keep_first=True, frames=NUM_FRAMES)

    stage = base.Stage("sft", [*motion_params, *adapter.parameters()], holder, seed)
    stage.run(sft_loss)
    weights = {**edg.motion_state(unet), **{k: v.detach().clone() for k, v in adapter.public_state_dict().items()}}
    save_bundled(out, weights, {"text_dim": text_dim, "steps": stage.step, "seed": seed,
                                "trained": "motion modules + temporal text adapter"}, SFT_FILE)
    return {"steps": stage.step, "cpu_seconds": round(stage.cpu_seconds, 1), "final_loss": float(np.mean(stage.losses[-50:]))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps-scale", type=float, default=1.0, help="smoke tests only: fewer steps")
    parser.add_argument("--checkpoints", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    base.CHECKPOINTS = args.checkpoints or base.CHECKPOINTS
    out = args.out or base.OUT
    base.STEPS["sft"] = max(1, int(base.STEPS["sft"] * args.steps_scale))
    started = time.time()
    entry = train_sft(args.seed, out)
    log_path = out / "training_log.json"
    log = json.loads(log_path.read_text()) if log_path.is_file() else {}
    log["sft"] = entry
    log_path.write_text(json.dumps(log, indent=2) + "\n")
    print(json.dumps(entry, indent=2), f"wall {time.time() - started:.0f}s")


if __name__ == "__main__":
    main()
