"""The CT tab's variants for a reader study: the low-dose slice as it is, Filter2Noise, OpenCV's
bilateral filter set from the estimated noise, and BM3D, each made by the CT tab's own device entries
(`run` for Filter2Noise, `baselines` for the other two) through the one device boundary.

Cases are HU arrays. Bundled cases are tiles cut from the tab's low-dose examples (CT_small at
5,000 photons and the Shepp-Logan phantom at 10,000 and 2,500), the most structured tiles first, so a
10-case study is cheap enough to prepare in well under a minute on one CPU thread.
"""
from __future__ import annotations

import numpy as np

from studio.study.design import CT_CROPS, IMAGE_QUALITY, NumberSetting, StudyKind, Variant

KEY = "ct"
VARIANTS = (
    Variant("noisy", "Low-dose input (no denoising)"),
    Variant("filter2noise", "Filter2Noise"),
    Variant("bilateral", "OpenCV bilateral (sigma from the estimated noise)"),
    Variant("bm3d", "BM3D (noise estimated)"),
)
DEFAULT_ITERATIONS = 100
BUNDLED = ("CT_small_I0_5e3.dcm", "phantom_I0_1e4.npy", "phantom_I0_2.5e3.npy")
# the baselines entry always runs ZS-N2N as well; one iteration keeps its cost negligible here
ZS_ITERATIONS_UNUSED = 1
MAX_FRAMES = 200


def _asset_dir():
    from studio.loader import bundled_dir
    from studio.registry import paper_spec

    return bundled_dir(paper_spec("filter2noise"))


def load_case(path) -> np.ndarray:
    """A CT file (DICOM, 16-bit PNG/TIFF, .npy) -> its HU pixels; the header is dropped here."""
    from adapters.filter2noise.io import load_slice

    return np.ascontiguousarray(load_slice(path).hu, np.float32)


def load_cases(path, crop: int = 0) -> list[np.ndarray]:
    """Every slice of a file as a case: one for a single slice, one per frame of a multi-frame
    DICOM or a 3-D .npy stack (a series), each centre-cropped to ``crop`` px when asked."""
    from adapters.common.errors import BadInput
    from adapters.filter2noise.io import load_slice

    first = load_slice(path)
    if first.frames > MAX_FRAMES:
        raise BadInput(f"The series has {first.frames} frames; a study takes at most {MAX_FRAMES} from one file.")
    slices = [first.hu] if first.frames == 1 else [load_slice(path, f).hu for f in range(first.frames)]
    return [crop_centre(np.ascontiguousarray(hu, np.float32), crop) for hu in slices]


def crop_centre(hu: np.ndarray, crop: int) -> np.ndarray:
    if not crop or min(hu.shape) <= crop:
        return hu
    top, left = (hu.shape[0] - crop) // 2, (hu.shape[1] - crop) // 2
    return np.ascontiguousarray(hu[top:top + crop, left:left + crop])


def bundled_cases(count: int, crop: int) -> list[np.ndarray]:
    """``count`` cases from the bundled low-dose slices: whole slices when ``crop`` is 0, else
    non-overlapping crop x crop tiles, taken round-robin from the slices, most structured first."""
    slices = [load_case(_asset_dir() / name) for name in BUNDLED]
    if not crop:
        if count > len(slices):
            from adapters.common.errors import BadInput

            raise BadInput(f"The bundled examples give {len(slices)} whole slices; pick a crop size for more cases.")
        return slices[:count]
    per_slice = []
    for hu in slices:
        tiles = [hu[y:y + crop, x:x + crop] for y in range(0, hu.shape[0] - crop + 1, crop)
                 for x in range(0, hu.shape[1] - crop + 1, crop)]
        # structure = spread of a 4x4-block-mean image (noise averages out, edges do not)
        def structure(t):
            h, w = (t.shape[0] // 4) * 4, (t.shape[1] // 4) * 4
            return float(t[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3)).std())

        per_slice.append(sorted(tiles, key=structure, reverse=True))
    cases = [np.ascontiguousarray(tiles[i], np.float32) for i in range(max(map(len, per_slice)))
             for tiles in per_slice if i < len(tiles)]
    if count > len(cases):
        from adapters.common.errors import BadInput

        raise BadInput(f"The bundled examples give {len(cases)} tiles of {crop} px; ask for fewer cases or a smaller crop.")
    return cases[:count]


def compute(hu: np.ndarray, settings: dict, progress=None) -> dict:
    """Every variant of one case, made by the CT tab's device entries."""
    from adapters.filter2noise.config import BaselinesRequest, DenoiseRequest, FitSettings
    from adapters.filter2noise.io import check_slice
    from studio.device import progress_to, run_paper

    hu = check_slice(np.asarray(hu, np.float32), "The case")
    iterations = int(settings.get("iterations", DEFAULT_ITERATIONS))
    with progress_to(lambda f, text: progress(0.8 * f, text) if progress else None):
        fitted = run_paper("filter2noise", "run", DenoiseRequest(hu, FitSettings(iterations=iterations)))
    if progress:
        progress(0.85, "Bilateral and BM3D")
    base = run_paper("filter2noise", "baselines", BaselinesRequest(hu, None, zs_iterations=ZS_ITERATIONS_UNUSED))
    by_name = {image.name: image.hu for image in base.result.images}

    def pick(prefix):
        return next(v for k, v in by_name.items() if k.startswith(prefix))

    return {"noisy": hu, "filter2noise": fitted.result.state.denoised_hu,
            "bilateral": pick("OpenCV bilateral (sigma from estimated noise)"), "bm3d": pick("BM3D")}


def estimate_seconds(shape, settings: dict) -> float:
    """One case on one free CPU thread, from timings taken here (64 px: 10 iterations 0.36 s, 30
    iterations 1.0 s; bilateral + BM3D 1.4 s, BM3D growing with the pixel count). A busy machine
    takes several times longer."""
    iterations = int(settings.get("iterations", DEFAULT_ITERATIONS))
    pixels = float(np.prod(shape[:2]))
    return 0.05 + 0.032 * iterations + 0.3 + 1.1 * pixels / 64 ** 2


def display(hu: np.ndarray, window: str) -> np.ndarray:
    from adapters.filter2noise.viz import window_values, windowed

    return windowed(hu, *window_values(window))


def _windows() -> tuple[str, ...]:
    from adapters.filter2noise.viz import WINDOWS

    return tuple(WINDOWS)


def settings_note(settings: dict) -> str:
    return f"The trained method trains {int(settings.get('iterations', DEFAULT_ITERATIONS))} iterations per case."


CT = StudyKind(
    key=KEY,
    title="CT denoising (low-dose CT slices)",
    variants=VARIANTS,
    compute=compute,
    display=display,
    windows=_windows(),
    load_cases=load_cases,
    bundled_cases=bundled_cases,
    default_settings={"iterations": DEFAULT_ITERATIONS},
    settings_note=settings_note,
    estimate_seconds=estimate_seconds,
    criteria=IMAGE_QUALITY,
    crops=CT_CROPS,
    files_label=("Your cases: CT files (DICOM, 16-bit PNG/TIFF as HU+1024, .npy in HU), one case per slice; a "
                 "multi-frame DICOM or 3-D .npy gives one case per frame; only the pixels are used"),
    file_types=(".dcm", ".dicom", ".ima", ".png", ".tif", ".tiff", ".npy"),
    number_setting=NumberSetting("iterations", "Training iterations per case for the trained method", 10, 500, 10,
                                 DEFAULT_ITERATIONS),
    unit="slices",
)
