"""Filter2Noise (CT denoising): an explicit bilateral filter whose per-pixel sigmas come from a tiny
attention predictor trained on the slice itself. Strings only here: cheap to import."""
from __future__ import annotations

from adapters.common.contract import PaperSpec

SPEC = PaperSpec(
    key="filter2noise",
    title="CT denoising (Filter2Noise)",
    paper="Filter2Noise: A Framework for Interpretable and Zero-Shot Low-Dose CT Image Denoising (2025)",
    paper_url="https://arxiv.org/abs/2504.13519",
    official_code="https://github.com/sypsyp97/Filter2Noise (CC BY-NC 4.0: read for the method, none of it copied)",
    frozen_model="Explicit bilateral filter (0 parameters, fixed 11x11 kernel); nothing pretrained",
    adapter="Attention sigma predictor (per stage) giving per-pixel sigma_x, sigma_y, sigma_range, trained on the slice itself",
    real=("The CT_small slice is a real CT (pydicom's test data) at a simulated low dose; the Shepp-Logan phantom "
          "is synthetic; nothing pretrained: the sigma predictor trains on each slice itself."),
    description=(
        "*Filter2Noise* denoises one low-dose CT slice with no training data. What is fixed is an "
        "explicit bilateral filter (no parameters); the adapter is a tiny attention network that "
        "predicts, for every pixel, the filter's spatial sigmas (mm) and range sigma (HU), trained in "
        "seconds on the slice itself with a downsample-and-shuffle self-supervised loss. Because the "
        "filter is explicit you can inspect its sigma maps, and smooth more or less inside a region "
        "you paint, without retraining. Intensities are HU throughout (one fixed mapping), so "
        "sigma_range is in HU on every image. Research demo: not for diagnosis."
    ),
    hub=(),
    identity_at_start=False,  # a fresh predictor gives global sigmas, which already filter the slice
)
