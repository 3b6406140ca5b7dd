"""Inference for the FGSA tab, without gradio: the adapter and the frozen baseline on one image,
the ring-gain edit from the cached frozen prefix (what the frozen model computes before any
adapter code), and the band bookkeeping.

Device entries (`studio.device.run_paper` calls them with plain requests and returns plain results):
`run` (a `SegmentRequest` -> `SegmentResult`) and `rerender` (an `EditRequest` -> `EditResult`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from adapters.common.contract import Progress
from adapters.fgsa.config import BAND_NAMES, EditRequest, SegmentRequest
from adapters.fgsa.loading import FGSABundle
from adapters.fgsa.modeling import FGSAttn, band_of_rings, ring_gains_from_bands

# --- running -----------------------------------------------------------------------------------


def site_gains(model, site: str, band_scales, all_sites: bool = False) -> dict[str, torch.Tensor]:
    """Per-ring user gains for one site (or every site) from the band sliders."""
    names = model.site_names() if all_sites else [site]
    gains = {}
    for name in names:
        gains[name] = ring_gains_from_bands(band_scales, model.site(name).n_rings)
    return gains


@dataclass
class Analysis:
    prob: np.ndarray  # S x S in [0, 1]
    seconds: float
    site: dict | None  # FGSAttn intermediates at the chosen site (learned and edited), torch tensors


@torch.no_grad()
def run_adapter(bundle: FGSABundle, image: torch.Tensor, site: str, band_scales, all_sites: bool = False,
                embedded: torch.Tensor | None = None, device: torch.device | None = None) -> Analysis:
    model = bundle.adapter
    device = device or torch.device("cpu")
    start = time.perf_counter()
    gains = site_gains(model, site, band_scales, all_sites) if site in model.site_names() else None
    probes: dict = {}
    image = image.to(device)
    prob = model(image, gains=gains, probes=probes, embedded=None if embedded is None else embedded.to(device)).sigmoid()
    info = None
    if site in probes and site in model.site_names():
        attn: FGSAttn = model.site(site)
        feat = probes[site]
        learned = attn.analyse(feat)
        edited = attn.analyse(feat, gains[site]) if gains else learned
        info = {k: v[0].float().cpu() for k, v in edited.items() if k != "labels"}
        info["labels"] = edited["labels"].cpu()
        info["learned_attention"] = learned["attention"][0].float().cpu()
        info["user_gain"] = gains[site] if gains else torch.ones(attn.n_rings)
    return Analysis(prob[0, 0].float().cpu().numpy(), time.perf_counter() - start, info)


@torch.no_grad()
def run_frozen(bundle: FGSABundle, image: torch.Tensor, device: torch.device | None = None,
               embedded: torch.Tensor | None = None) -> np.ndarray | None:
    if bundle.frozen_head is None:
        return None
    device = device or "cpu"
    embedded = None if embedded is None else embedded.to(device)
    return bundle.frozen_head(image.to(device), embedded=embedded).sigmoid()[0, 0].float().cpu().numpy()


@torch.no_grad()
def frozen_embedding(bundle: FGSABundle, image: torch.Tensor, device=None) -> torch.Tensor:
    """What the frozen model computes before any adapter code: the patch embedding (TinyViT), or
    the token stream after the frozen prefix blocks (DINOv2: blocks 0-7). An edit starts from it."""
    model = bundle.adapter
    return model.backbone.embed(model.normalise(image.to(device or "cpu")))


# --- device entries (plain data in and out) ----------------------------------------------------


@dataclass(frozen=True)
class SiteAnalysis:
    """FGSAttn at the inspected site, first sample (numpy): what the spectrum and attention panels draw."""

    amplitude: np.ndarray  # G x h x w, centred amplitude of the pooled map
    gain: np.ndarray  # G x rings, learned x user gain
    learned_gain: np.ndarray  # G x rings
    labels: np.ndarray  # h x w ring index
    attention: np.ndarray  # G x h x w, with the user's gains
    learned_attention: np.ndarray  # G x h x w, learned gains only
    user_gain: np.ndarray  # rings
    stride: int  # image pixels per map pixel at this site
    band_text: str  # which rings and frequencies each band slider controls here


@dataclass(frozen=True)
class SegmentResult:
    prob: np.ndarray  # S x S, adapter with the user's band scales
    learned_prob: np.ndarray  # S x S, adapter with the learned gains
    frozen_prob: np.ndarray | None  # S x S, frozen backbone + head ("adapter off"); None without one
    embedded: np.ndarray  # the frozen prefix (`frozen_embedding`; DINOv2: 1 x 1+hw x C), for `rerender`
    site: SiteAnalysis | None
    seconds: float


@dataclass(frozen=True)
class EditResult:
    prob: np.ndarray
    site: SiteAnalysis | None
    seconds: float


def _site_analysis(bundle: FGSABundle, site: str, info: dict | None) -> SiteAnalysis | None:
    if info is None:
        return None

    def arr(key):
        return info[key].detach().cpu().numpy().astype(np.float32)

    model = bundle.adapter
    return SiteAnalysis(amplitude=arr("amplitude"), gain=arr("gain"), learned_gain=arr("learned_gain"),
                        labels=info["labels"].cpu().numpy().astype(np.int64), attention=arr("attention"),
                        learned_attention=arr("learned_attention"), user_gain=arr("user_gain"),
                        stride=site_stride(model, site), band_text=band_table(model, site))


def _on(bundle: FGSABundle, device: torch.device) -> None:
    bundle.adapter.to(device)
    if bundle.frozen_head is not None:
        bundle.frozen_head.to(device)


def _report(progress: Progress, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


def run(bundle: FGSABundle, request: SegmentRequest, *, device, progress: Progress = None) -> SegmentResult:
    """Both models on one image: the adapter with the user's bands and with the learned gains (from
    one frozen prefix) and the frozen baseline (bundled DINOv2-S at 224 px: about 1-2 s on one CPU thread)."""
    start = time.perf_counter()
    device = torch.device(device)
    _on(bundle, device)
    image = torch.from_numpy(np.asarray(request.image, np.float32))
    _report(progress, 0.1, "Running the frozen model's first blocks")
    embedded = frozen_embedding(bundle, image, device)
    _report(progress, 0.3, "Running the adapter with your band scales")
    edited = run_adapter(bundle, image, request.site, request.bands, request.all_sites, embedded, device)
    _report(progress, 0.6, "Running the adapter with the learned gains")
    learned = run_adapter(bundle, image, request.site, [1.0] * len(BAND_NAMES), request.all_sites, embedded, device)
    frozen = None
    if request.baseline:
        _report(progress, 0.8, "Running the frozen backbone + head")
        frozen = run_frozen(bundle, image, device, embedded)
    return SegmentResult(prob=edited.prob, learned_prob=learned.prob, frozen_prob=frozen,
                         embedded=embedded.float().cpu().numpy(), site=_site_analysis(bundle, request.site, edited.site),
                         seconds=time.perf_counter() - start)


def rerender(bundle: FGSABundle, request: EditRequest, *, device, progress: Progress = None) -> EditResult:
    """Only the adapter path, from the frozen prefix of an earlier `run`."""
    start = time.perf_counter()
    device = torch.device(device)
    bundle.adapter.to(device)
    _report(progress, 0.2, "Re-running the adapter from the cached frozen prefix")
    image = torch.from_numpy(np.asarray(request.image, np.float32))
    embedded = torch.from_numpy(np.asarray(request.embedded, np.float32))
    edited = run_adapter(bundle, image, request.site, request.bands, request.all_sites, embedded, device)
    return EditResult(prob=edited.prob, site=_site_analysis(bundle, request.site, edited.site),
                      seconds=time.perf_counter() - start)


def gpu_seconds(entry: str, request) -> int:
    return 10 if entry == "rerender" else 30


# --- bands -------------------------------------------------------------------------------------


def site_stride(model, site: str) -> int:
    if site.startswith("c"):
        return 2 ** (int(site[1:]) + 1)
    return model.backbone.patch


def band_table(model, site: str) -> str:
    """Which rings and frequencies each slider controls at this site (Markdown)."""
    n = model.site(site).n_rings
    stride = site_stride(model, site)
    per_ring = 1.0 / (stride * 2 * (n - 1)) if n > 1 else 0
    rows = []
    for name, rings in zip(BAND_NAMES, band_of_rings(n, len(BAND_NAMES))):
        if not rings:
            rows.append(f"{name}: (none at this site)")
            continue
        lo, hi = rings[0] * per_ring, rings[-1] * per_ring
        rows.append(f"{name}: rings {rings[0]}–{rings[-1]} ≈ {lo:.3f}–{hi:.3f} cycles/px")
    return " · ".join(rows)


def bands_covering(model, site: str, band: tuple[float, float]) -> list[int]:
    """Indices of the user bands whose rings hold frequencies in `band` (cycles per image pixel)."""
    n = model.site(site).n_rings
    stride = site_stride(model, site)
    per_ring = 1.0 / (stride * 2 * (n - 1))
    hit = []
    for index, rings in enumerate(band_of_rings(n, len(BAND_NAMES))):
        if any(band[0] <= r * per_ring <= band[1] for r in rings):
            hit.append(index)
    return hit


def known_band_gains(model, site: str | None) -> dict[str, torch.Tensor]:
    """Gains that zero the user bands holding the spectral scenes' object and background
    frequencies, at one site or (None) at every site."""
    from adapters.fgsa.data import BACKGROUND_BAND, OBJECT_BAND

    gains = {}
    for name in ([site] if site else model.site_names()):
        known = set(bands_covering(model, name, OBJECT_BAND)) | set(bands_covering(model, name, BACKGROUND_BAND))
        gains |= site_gains(model, name, [0.0 if i in known else 1.0 for i in range(len(BAND_NAMES))])
    return gains
