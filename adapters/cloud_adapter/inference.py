"""Inference for the Cloud-Adapter tab, without gradio. Device entry: `run` (a `SegmentRequest`
-> `SegmentResult`): the adapter (with the user's strength and depths), the frozen backbone + head,
and optionally the LoRA-only variant, on 112 px tiles stitched back to the image; the context
ConvNet's maps on the whole image."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from adapters.cloud_adapter.config import SegmentRequest
from adapters.cloud_adapter.loading import CloudBundle
from adapters.cloud_adapter.simulate import CLASSES
from adapters.common.contract import Progress
from adapters.dense import tiling
from adapters.dense.metrics import confusion, scores

OVERLAP = 16
BATCH = 8


@dataclass(frozen=True)
class SegmentResult:
    adapter: np.ndarray  # H x W uint8 classes, adapter at the user's strength and depths
    frozen: np.ndarray | None  # H x W uint8, frozen backbone + head
    lora: np.ndarray | None  # H x W uint8, LoRA-only variant
    context: tuple  # context ConvNet maps on the whole image: (name, h x w float32 in [0, 1]) pairs
    update: tuple  # (block, mean |adapter update| / mean |token|) on the first tile
    tiles: int
    seconds: float
    seconds_per_tile: float  # all models run, per tile


def _report(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


@torch.no_grad()
def segment(model, image: np.ndarray, tile: int, device, probes: dict | None = None, **kwargs) -> np.ndarray:
    """H x W classes for an H x W x 3 image (sides >= tile) from overlapping tiles."""
    h, w = image.shape[:2]
    corners = tiling.origins(h, w, tile, OVERLAP if (h > tile or w > tile) else 0)
    tiles = tiling.cut(image, corners, tile).transpose(0, 3, 1, 2)
    probs = []
    for i in range(0, len(tiles), BATCH):
        x = torch.from_numpy(np.ascontiguousarray(tiles[i:i + BATCH], np.float32)).to(device)
        p = probes if (probes is not None and i == 0) else None
        probs.append(model(x, probes=p, **kwargs).softmax(1).float().cpu().numpy())
    return tiling.stitch(np.concatenate(probs), corners, h, w).argmax(0).astype(np.uint8)


def _unit(m: np.ndarray) -> np.ndarray:
    lo, hi = float(m.min()), float(m.max())
    return ((m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)).astype(np.float32)


@torch.no_grad()
def context_maps(bundle: CloudBundle, image: np.ndarray, device) -> tuple:
    """The context ConvNet's stages and the pooled context it hands the adapter, each as the
    channel-mean magnitude scaled to [0, 1]."""
    levels: list = []
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32)).to(device)
    pooled = bundle.full.context(x, levels)
    if pooled is None:
        return ()
    out = [(f"stage {i} (1/{2 ** i})", _unit(t[0].abs().mean(0).float().cpu().numpy())) for i, t in enumerate(levels)]
    out.append(("pooled context", _unit(pooled[0].abs().mean(0).float().cpu().numpy())))
    return tuple(out)


def run(bundle: CloudBundle, request: SegmentRequest, *, device, progress: Progress = None) -> SegmentResult:
    start = time.perf_counter()
    device = torch.device(device)
    image = np.asarray(request.image, np.float32)
    models = [m for m in (bundle.full, bundle.off, bundle.lora) if m is not None]
    for m in models:
        m.to(device)
    tile = bundle.tile
    n_tiles = len(tiling.origins(*image.shape[:2], tile, OVERLAP if max(image.shape[:2]) > tile else 0))
    probes: dict = {}
    _report(progress, 0.05, f"Adapter on {n_tiles} tile(s)")
    adapter = segment(bundle.full, image, tile, device, probes, strength=request.strength, depths=request.depths())
    frozen = lora = None
    if request.baseline and bundle.off is not None:
        _report(progress, 0.45, "Frozen backbone + head")
        frozen = segment(bundle.off, image, tile, device)
    if request.lora and bundle.lora is not None:
        _report(progress, 0.7, "LoRA-only variant")
        lora = segment(bundle.lora, image, tile, device)
    _report(progress, 0.9, "Context maps")
    context = context_maps(bundle, image, device)
    update = tuple(sorted((int(k), float(v)) for k, v in probes.get("update_norm", {}).items()))
    seconds = time.perf_counter() - start
    return SegmentResult(adapter, frozen, lora, context, update, n_tiles, seconds, seconds / n_tiles)


def gpu_seconds(entry: str, request) -> int:
    return 30


def iou_rows(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Per-class IoU (NaN where a class is absent from both) and mIoU over the classes present."""
    s = scores(confusion(pred, labels, len(CLASSES)))
    return {"iou": s["iou"], "miou": s["miou"], "accuracy": s["accuracy"]}
