"""FGSA: a frequency-guided spatial adapter on a frozen ViT, for camouflaged-object detection."""
from __future__ import annotations

from adapters.common.contract import HubPart, PaperSpec

SPEC = PaperSpec(
    key="fgsa",
    title="Camouflaged objects (FGSA)",
    paper="Frequency-Guided Spatial Adaptation for Camouflaged Object Detection (Zhang et al., IEEE TMM 2025; 2024 preprint)",
    paper_url="https://doi.org/10.1109/TMM.2024.3521681",
    official_code="",
    frozen_model="bundled: TinyViT (4 blocks, 96 wide) pretrained here on salient synthetic scenes · hub: SAM ViT-B image encoder (facebook/sam-vit-base); the paper froze a Uni-Perceiver ViT-L",
    adapter="conv branch + FGSAttn (ring-wise FFT amplitude gains) + zero-gated injectors/extractors + light head",
    real=("Bundled: the frozen ViT and the adapter were both trained here on synthetic 64x64 scenes (scikit-image "
          "textures and band-limited noise), so they say nothing about real camouflaged photographs; the hub "
          "path freezes SAM ViT-B's real image encoder, for which no FGSA adapter is published."),
    description=(
        "**Frequency-Guided Spatial Adaptation for Camouflaged Object Detection** (FGSA, 2024). A frozen "
        "ViT cannot tell a camouflaged object from its background: they share colour and texture. FGSA "
        "adds a conv branch on the raw image and FGSAttn: it takes the FFT of a pooled feature map, "
        "groups the spectrum into rings, turns each ring's mean amplitude into a learned gain, rescales "
        "and inverts the spectrum into a spatial attention map (scaled by the pooled map's spread, so a "
        "suppressed band really leaves the attention). Its outputs enter the frozen token "
        "stream through gates that start at zero. Below you can see the rings and their gains at each "
        "site, scale frequency bands (0 suppresses, 1 keeps the learned gain, >1 boosts) and watch the "
        "mask change. Frozen model: here a small ViT pretrained in this repo on salient synthetic scenes (it works on "
        "64x64 scenes; uploads are resized to that); on a GPU Space SAM's ViT-B image encoder "
        "(`facebook/sam-vit-base`). The paper froze a Uni-Perceiver ViT-L."
    ),
    hub=(
        HubPart("frozen", "facebook/sam-vit-base", "SAM ViT-B image encoder (frozen)", local_subdir=""),
        HubPart("adapter", None, "FGSA adapter trained on SAM ViT-B", local_subdir="",
                unpublished="train one with training/fgsa/train_cod.py"),
    ),
    # The zero-initialised gates leave the frozen *token stream* exactly as the frozen model computes
    # it (tests/papers/fgsa checks it), but the mask comes from the adapter's own new head over the
    # conv-branch pyramid, so a fresh adapter's mask is not the frozen baseline's.
    identity_at_start=False,
)
