"""Low-dose CT simulated the way the noise arises: HU -> attenuation, projections, Poisson photon
counts at I0 per ray, -log, filtered back-projection. The noiseless reconstruction through the same
pipeline is the reference, so the only difference between reference and noisy image is dose."""
from __future__ import annotations

import numpy as np

MU_WATER_PER_MM = 0.0192


def shepp_logan_hu(size: int = 256) -> np.ndarray:
    """scikit-image's Shepp-Logan phantom mapped to plausible HU: air, a bone rim, soft tissue."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    p = resize(shepp_logan_phantom(), (size, size), order=0, anti_aliasing=False)
    hu = np.full(p.shape, -1000.0)
    inside = p > 0.05
    hu[inside] = 40.0 + (p[inside] - 0.2) * 500.0  # soft tissue around 40 HU, lesions +-50 HU
    hu[p > 0.9] = 900.0  # the outer ellipse as a skull
    return hu.astype(np.float32)


def simulate_low_dose(hu: np.ndarray, photons: float, pixel_mm: float = 1.0, views: int = 360,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(noisy_hu, reference_hu) for a slice at `photons` (I0) per ray.

    The slice is zero-attenuation padded to a square inscribed in the scan circle, so nothing is
    cut off; the reference is the noiseless FBP of the same geometry.
    """
    from skimage.transform import iradon, radon

    hu = np.asarray(hu, np.float64)
    h, w = hu.shape
    mu = np.clip(MU_WATER_PER_MM * (1.0 + hu / 1000.0), 0.0, None) * pixel_mm  # per pixel
    side = int(np.ceil(np.hypot(h, w))) + 2
    canvas = np.zeros((side, side))
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = mu
    theta = np.linspace(0.0, 180.0, views, endpoint=False)
    sino = radon(canvas, theta=theta, circle=True)
    rng = np.random.default_rng(seed)
    counts = rng.poisson(photons * np.exp(-sino)).astype(np.float64)
    noisy_sino = -np.log(np.maximum(counts, 1.0) / photons)

    def reconstruct(s):
        rec = iradon(s, theta=theta, filter_name="ramp", circle=True, output_size=side)
        rec = rec[top:top + h, left:left + w] / pixel_mm
        return (rec / MU_WATER_PER_MM - 1.0) * 1000.0

    return reconstruct(noisy_sino).astype(np.float32), reconstruct(sino).astype(np.float32)


def psnr_ssim(result_hu: np.ndarray, reference_hu: np.ndarray, hu_range: tuple[float, float] = (-1024.0, 3071.0)) -> tuple[float, float]:
    """PSNR (dB) and SSIM with both images clipped to `hu_range`, whose width is the data range."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    lo, hi = hu_range
    a = np.clip(np.asarray(result_hu, np.float64), lo, hi)
    b = np.clip(np.asarray(reference_hu, np.float64), lo, hi)
    rng = hi - lo
    return (float(peak_signal_noise_ratio(b, a, data_range=rng)),
            float(structural_similarity(b, a, data_range=rng)))


def neighbour_slices(hu: np.ndarray, n: int, spread: float = 0.08) -> list[np.ndarray]:
    """``n`` slices that change smoothly like neighbours in a series, made from one real slice by a
    zoom of up to +-``spread`` about its centre (anatomy grows and shrinks slice to slice). Synthetic
    in their differences, real in their content."""
    import cv2

    h, w = hu.shape
    out = []
    for z in np.linspace(1.0 - spread, 1.0 + spread, n):
        m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), 0.0, float(z))
        out.append(cv2.warpAffine(np.asarray(hu, np.float32), m, (w, h), flags=cv2.INTER_CUBIC,
                                  borderMode=cv2.BORDER_REFLECT_101))
    return out
