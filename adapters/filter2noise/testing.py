"""A tiny real Filter2Noise bundle and the hooks of the shared contract tests (tests/contract)."""
from __future__ import annotations

import numpy as np
import torch

from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.config import DenoiseRequest, F2NConfig, FitSettings
from adapters.filter2noise.loading import F2NBundle

TINY_CONFIG = F2NConfig(stages=2, patch=4, width=8)
# the frozen filter's fixed setting when no predictor is used: 1 px spatially, 60 HU in range
DEFAULT_SIGMA_XY_PX = 1.0
DEFAULT_SIGMA_R_HU = 60.0


def _tiny_noisy_hu(seed: int = 0, size: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hu = np.full((size, size), 40.0)
    hu[size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 200.0
    return (hu + rng.normal(0.0, 30.0, hu.shape)).astype(np.float32)


def _tiny_input() -> torch.Tensor:
    return torch.from_numpy(f2n.hu_to_unit(_tiny_noisy_hu()))[None, None]


def tiny_bundle(seed: int = 0) -> F2NBundle:
    """The same bundle class as the app's, with a small predictor (width 8, 4x4 patches)."""
    torch.manual_seed(seed)
    return F2NBundle(TINY_CONFIG, f2n.Filter2Noise(TINY_CONFIG))


def example_request() -> DenoiseRequest:
    return DenoiseRequest(_tiny_noisy_hu(), FitSettings(iterations=2, crop=16))


def adapter_parameters(bundle: F2NBundle) -> dict:
    return dict(bundle.model.named_parameters())


def frozen_parameters(bundle: F2NBundle) -> dict:
    # Nothing is frozen: the frozen part is an explicit bilateral filter with no parameters.
    return {}


def perturb_adapter(bundle: F2NBundle, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in bundle.model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=generator))


def _fixed_sigmas(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ones = torch.ones_like(x)
    return ones * DEFAULT_SIGMA_XY_PX, ones * DEFAULT_SIGMA_XY_PX, ones * (DEFAULT_SIGMA_R_HU / f2n.HU_RANGE)


@torch.no_grad()
def output(bundle: F2NBundle, adapter_on: bool) -> np.ndarray:
    """The cascade on a fixed tiny noisy slice: predicted sigmas (on) or the fixed ones (off)."""
    x = _tiny_input()
    bundle.model.eval()
    for predictor in bundle.model.predictors:
        if adapter_on:
            s = predictor(x)
            x = f2n.bilateral(x, s[:, 0:1], s[:, 1:2], s[:, 2:3], bundle.config.radius)
        else:
            x = f2n.bilateral(x, *_fixed_sigmas(x), bundle.config.radius)
    return x[0, 0].numpy().copy()


@torch.no_grad()
def frozen_output(bundle: F2NBundle) -> np.ndarray:
    """The explicit filter alone, once per stage, at the fixed sigmas: no predictor code at all."""
    x = _tiny_input()
    for _ in range(bundle.config.stages):
        x = f2n.bilateral(x, *_fixed_sigmas(x), bundle.config.radius)
    return x[0, 0].numpy().copy()


def training_step(bundle: F2NBundle, seed: int = 0) -> float:
    """One AdamW step of the paper's self-supervised loss (downsample, shuffle, consistency + edges)."""
    torch.manual_seed(seed)
    model = bundle.model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    terms = f2n.f2n_loss(model, _tiny_input(), FitSettings().edge_weight, f2n.dog_kernel())
    optimizer.zero_grad(set_to_none=True)
    terms.total.backward()
    optimizer.step()
    model.eval()
    return float(terms.total.detach())


def adapter_state_dict(bundle: F2NBundle) -> dict:
    return {k: v.detach().clone() for k, v in bundle.model.state_dict().items()}


def load_adapter_state_dict(bundle: F2NBundle, state: dict) -> None:
    bundle.model.load_state_dict(state)


def write_dicom_series(out_dir, slices_hu, source=None, spacing_z_mm: float = 2.5, series_uid: str | None = None) -> list:
    """A classic-CT DICOM series from HU slices, built on a real file's header (pydicom's CT_small
    by default): one Study/Series/Frame of Reference, instance numbers 1..n, positions along z.
    Written in shuffled file order so a reader must sort by position."""
    from pathlib import Path

    import pydicom
    from pydicom.uid import generate_uid

    from adapters.filter2noise.io import pydicom_test_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(source or pydicom_test_file("CT_small.dcm"))
    series_uid = series_uid or generate_uid()
    study, frame_of_reference = generate_uid(), generate_uid()
    slope, intercept = float(base.get("RescaleSlope", 1)), float(base.get("RescaleIntercept", 0))
    paths = []
    order = np.random.default_rng(7).permutation(len(slices_hu))
    for i, hu in enumerate(slices_hu):
        ds = base.copy()
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame_of_reference
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        x, y, z0 = (float(v) for v in base.ImagePositionPatient)
        ds.ImagePositionPatient = [f"{x:.4f}", f"{y:.4f}", f"{z0 + i * spacing_z_mm:.4f}"]  # DS: 16 characters at most
        ds.SliceLocation = f"{z0 + i * spacing_z_mm:.4f}"
        stored = np.clip(np.rint((np.asarray(hu, np.float64) - intercept) / slope), -32768, 32767).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
        path = out_dir / f"file_{int(order[i]):03d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
