"""Device work of the image-to-video tab: the adapter-on and adapter-off videos of one validated
request at the same seed, as plain numpy data. No gradio, no studio."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from adapters.common.contract import Progress
from adapters.i2v.config import AnimateRequest, EDGRequest, EDGSettings
from adapters.i2v.modeling import MotionSettings


@dataclass(frozen=True)
class AnimateResult:
    video_on: np.ndarray  # (F, S, S, 3) float32 in [0, 1], I2V-Adapter branch on
    video_off: np.ndarray  # the same sampler, prior and seed with the branch at 0
    flow_on: np.ndarray  # (F - 1,) mean Farneback flow per frame pair, px
    flow_off: np.ndarray
    motion: MotionSettings  # what the motion strength set (plain floats)


def gpu_seconds(entry: str, request: AnimateRequest | EDGRequest) -> int:
    """ZeroGPU seconds to reserve: two videos (adapter on and off; three for EDG) of frames x steps UNet passes;
    about 0.05 s per frame-step for SD 1.5 at 512 px on a ZeroGPU slice, plus model moves."""
    videos = 2
    if isinstance(request, EDGRequest):
        request, videos = request.animate, 3
    return int(min(300, 30 + videos * 0.05 * int(request.frames or 16) * int(request.steps or 25)))


def run(bundle, request: AnimateRequest, *, device, progress: Progress = None) -> AnimateResult:
    """Adapter on, then off, at the same seed; the progress bar covers both."""
    from adapters.i2v import modeling as i2v
    from adapters.i2v.data import flow_magnitudes
    from adapters.i2v.metrics import to_image_tensor

    # CPU threads are set once per process (studio.device.configure_threads, one by default): the
    # bundled model is thousands of tiny ops, which a second thread only slows down on a shared box.
    bundle.pipe.to(device)
    pixels = np.asarray(request.pixels, dtype=np.float32)
    image = to_image_tensor(pixels).to(device)
    motion = i2v.motion_settings(request.motion_strength)
    ip_image = None
    if bundle.uses_ip_adapter:
        from PIL import Image

        ip_image = Image.fromarray((np.clip(pixels, 0, 1) * 255).astype("uint8"))
    videos = {}
    for index, on in enumerate((True, False)):
        with torch.inference_mode():
            result = i2v.animate(bundle.pipe, image, request.prompt, motion=motion, num_frames=request.frames,
                                 steps=request.steps, guidance=request.guidance,
                                 negative_prompt=request.negative_prompt, seed=request.seed, adapter_on=on,
                                 ip_adapter_image=ip_image, progress=progress,
                                 progress_span=(index / 2, (index + 1) / 2),
                                 progress_text="Denoising (adapter on, then off)")
        videos[on] = np.ascontiguousarray(result.video.permute(0, 2, 3, 1).float().numpy())
    return AnimateResult(video_on=videos[True], video_off=videos[False], flow_on=flow_magnitudes(videos[True]),
                         flow_off=flow_magnitudes(videos[False]), motion=motion)


@dataclass(frozen=True)
class EDGResult:
    videos: tuple[np.ndarray, ...]  # pretrained, fine-tuned (theta_sft), EDG: (F, S, S, 3) in [0, 1]
    flows: tuple[np.ndarray, ...]  # (F - 1,) mean flow per frame pair, px, same order
    labels: tuple[str, ...]
    settings: EDGSettings
    adapter_params: int  # the temporal text adapter's parameters


EDG_LABELS = ("pretrained motion module", "fine-tuned with text (theta_sft)", "EDG: extrapolated + decoupled")


def edg(bundle, request: EDGRequest, *, device, progress: Progress = None) -> EDGResult:
    """The same image, prompt, prior and seed through the pretrained motion module, the text
    fine-tune, and EDG's dynamic (t > T) then controllable (t <= T) merges; I2V branch on for all."""
    from adapters.common.errors import BadInput
    from adapters.i2v import edg as merge
    from adapters.i2v import modeling as i2v
    from adapters.i2v.data import flow_magnitudes
    from adapters.i2v.metrics import to_image_tensor

    if bundle.edg_sft is None:
        raise BadInput("This model source has no fine-tuned motion module, so there is nothing to extrapolate from.")
    settings = merge.check_settings(request.settings)
    bundle.pipe.to(device)
    sft_only, pair = merge.models_for(bundle, settings, device)
    a = request.animate
    image = to_image_tensor(np.asarray(a.pixels, dtype=np.float32)).to(device)
    motion = i2v.motion_settings(a.motion_strength)
    videos = []
    for index, unets in enumerate((None, sft_only, pair)):
        with torch.inference_mode():
            result = i2v.animate(bundle.pipe, image, a.prompt, motion=motion, num_frames=a.frames, steps=a.steps,
                                 guidance=a.guidance, negative_prompt=a.negative_prompt, seed=a.seed, adapter_on=True,
                                 progress=progress, progress_span=(index / 3, (index + 1) / 3),
                                 progress_text="Denoising (pretrained, fine-tuned, EDG)", unets=unets)
        videos.append(np.ascontiguousarray(result.video.permute(0, 2, 3, 1).float().numpy()))
    adapter_params = sum(v.numel() for k, v in bundle.edg_sft.items() if merge.adapter_prefix(k))
    return EDGResult(tuple(videos), tuple(flow_magnitudes(v) for v in videos), EDG_LABELS, settings, adapter_params)
