"""Inference for the GLARE tab, without gradio. Device entry: `run` (a `SegmentRequest` ->
`SegmentResult`): the image cut into 112 px tiles, the frozen prefix once per tile, the remaining
blocks with the chosen UniAdapter set and without it; each feature map classified by its own linear
head (fitted on the same labelled pixels), and both shown as a 3-colour PCA of the patch features."""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from adapters.common.contract import Progress
from adapters.dense.metrics import confusion, scores
from adapters.glare import features
from adapters.glare.config import SegmentRequest
from adapters.glare.loading import GlareBundle
from adapters.glare.modeling import N_CLASSES


@dataclass(frozen=True)
class SegmentResult:
    adapted: np.ndarray  # H x W uint8 classes 0..6 (land-cover code - 1), adapted features + their head
    frozen: np.ndarray  # H x W uint8, frozen features + their head (same labelled pixels)
    pca_frozen: np.ndarray  # H x W x 3 float32 in [0, 1], PCA of the frozen patch features
    pca_adapted: np.ndarray  # H x W x 3 float32, PCA of the adapted patch features
    scores: tuple  # ((name, miou, accuracy, labelled pixels), ...) where labels are known, else ()
    feature_change: float  # mean cosine distance between adapted and frozen patch features
    tiles: int
    seconds: float


def _report(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


def pca_image(maps: torch.Tensor, corners, tile: int, height: int, width: int) -> np.ndarray:
    """The first three principal components of every tile's patch features (fitted on all of them),
    each stretched to [0, 1] by its 2nd-98th percentiles, upsampled to pixels and stitched."""
    n, c, h, w = maps.shape
    flat = maps.permute(0, 2, 3, 1).reshape(-1, c).double()
    centred = flat - flat.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    comps = centred @ v[:3].T
    # a component's sign is arbitrary: make its largest loading positive so before/after colours are stable
    comps = comps * torch.sign(v[:3].gather(1, v[:3].abs().argmax(1, keepdim=True))).T
    lo, hi = torch.quantile(comps, 0.02, dim=0), torch.quantile(comps, 0.98, dim=0)
    comps = ((comps - lo) / (hi - lo).clamp_min(1e-9)).clamp(0, 1).float()
    grids = comps.reshape(n, h, w, 3).permute(0, 3, 1, 2)
    pixels = F.interpolate(grids, size=(tile, tile), mode="bilinear", align_corners=False).numpy()
    from adapters.dense import tiling

    return tiling.stitch(pixels, corners, height, width).transpose(1, 2, 0).clip(0, 1)


def label_scores(pred: np.ndarray, labels: np.ndarray) -> tuple[float, float, int]:
    """mIoU and accuracy on the labelled pixels (codes 1..7), over the classes present in either."""
    keep = labels > 0
    s = scores(confusion(pred[keep], labels[keep].astype(np.int64) - 1, N_CLASSES))
    return s["miou"], s["accuracy"], int(keep.sum())


@torch.no_grad()
def run(bundle: GlareBundle, request: SegmentRequest, *, device, progress: Progress = None) -> SegmentResult:
    start = time.perf_counter()
    device = torch.device(device)
    request.check()
    image = np.asarray(request.image, np.float32)
    height, width = image.shape[:2]
    encoder, adapter = bundle.encoder.to(device), bundle.adapters[request.loss_set].to(device)
    tile = bundle.tile
    _report(progress, 0.02, "Frozen prefix, then the last blocks with and without the adapters")
    maps, corners = features.tile_maps(encoder, image, flags=(True, False), device=device, adapter=adapter,
                                       progress=lambda f: _report(progress, 0.02 + 0.78 * f, "Feature maps"))
    _report(progress, 0.85, "Linear heads")
    classes = {}
    for on, variant in ((True, request.loss_set), (False, "frozen")):
        logits = features.stitched_logits(bundle.head(variant, request.fraction), maps[on], corners, tile, height, width)
        classes[on] = logits.argmax(0).astype(np.uint8)
    _report(progress, 0.92, "PCA of the patch features")
    pca = {on: pca_image(maps[on], corners, tile, height, width).astype(np.float32) for on in (True, False)}
    change = float(1 - F.cosine_similarity(maps[True], maps[False], dim=1).mean())
    rows = ()
    if request.labels is not None and (np.asarray(request.labels) > 0).any():
        labels = np.asarray(request.labels)
        rows = tuple((name, *label_scores(classes[on], labels)) for name, on in (("adapted", True), ("frozen", False)))
    _report(progress, 1.0, "Done")
    return SegmentResult(classes[True], classes[False], pca[False], pca[True], rows, change, len(corners),
                         time.perf_counter() - start)


def gpu_seconds(entry: str, request) -> int:
    return 30
