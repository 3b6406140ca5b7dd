"""Pictures for the GLARE tab (numpy + PIL): land-cover maps, overlays of the labelled pixels, PCA
views, and the class-map file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

# the names stored with the scene's label polygons (landsat96_polygons.dbf), codes 1..7
CLASSES = ("developed", "agriculture", "herbaceous", "shrubland", "forest", "water", "sediment")
PALETTE = np.array([(220, 40, 40), (240, 200, 60), (150, 220, 100), (160, 120, 60), (20, 110, 40), (40, 90, 220),
                    (200, 200, 200)], np.uint8)
DISPLAY = 320  # drawn at least this large (nearest neighbour), so a phone shows the pixels


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def enlarge(img: np.ndarray, minimum: int = DISPLAY) -> np.ndarray:
    factor = max(1, int(np.ceil(minimum / max(img.shape[:2]))))
    return np.repeat(np.repeat(img, factor, 0), factor, 1) if factor > 1 else img


NODATA = (0, 0, 0)


def class_map(classes: np.ndarray, nodata: np.ndarray | None = None) -> np.ndarray:
    """Classes 0..6 -> their palette colours (black where `nodata` is set), enlarged."""
    out = PALETTE[classes]
    if nodata is not None:
        out[nodata] = NODATA
    return enlarge(out)


def no_data(rgb: np.ndarray) -> np.ndarray:
    """Pixels that are exactly black in every band: the scene's no-data edge (nothing to classify)."""
    return (np.asarray(rgb) == 0).all(-1)


def with_labels(rgb: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """The image with its labelled pixels (codes 1..7) painted in their class colours."""
    out = to_uint8(rgb)
    if labels is not None:
        keep = labels > 0
        out[keep] = PALETTE[labels[keep] - 1]
    return enlarge(out)


def legend_markdown() -> str:
    swatches = " ".join(f"<span style='display:inline-block;width:0.9em;height:0.9em;background:rgb{tuple(int(c) for c in col)};"
                        f"border:1px solid #888;vertical-align:middle'></span> {name}" for name, col in zip(CLASSES, PALETTE))
    return f"**Legend:** {swatches} (black: no data at the scene edge)"


def save_classes_png(classes: np.ndarray, path: Path) -> Path:
    """The predicted classes as a palette PNG (pixel value = land-cover code 1..7)."""
    from PIL import Image

    img = Image.fromarray((classes.astype(np.uint8) + 1), mode="P")
    img.putpalette([0, 0, 0] + PALETTE.reshape(-1).tolist() + [0] * (768 - 3 - PALETTE.size))
    img.save(path)
    return path


def curve_png(curve: dict, path: Path) -> Path | None:
    """mIoU vs labelled fraction, mean ± sd over seeds, one line per feature set.
    `curve`: name -> {"fractions": [...], "mean": [...], "sd": [...], "seeds": n}."""
    if not curve:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.0), dpi=110)
    styles = {"frozen": dict(color="#444444", linestyle="--", marker="s")}
    for i, (name, c) in enumerate(curve.items()):
        x = [100 * f for f in c["fractions"]]
        style = styles.get(name, dict(marker="o", color=("#1f77b4", "#2ca02c", "#d62728")[i % 3]))
        label = "frozen DINOv2-S" if name == "frozen" else f"adapted: {name}"
        ax.errorbar(x, c["mean"], yerr=c["sd"], capsize=3, label=label, linewidth=1.5, **style)
    ax.set_xscale("log")
    ax.set_xticks([1, 5, 20, 100], labels=["1%", "5%", "20%", "100%"])
    ax.set_xlabel("labelled training pixels")
    ax.set_ylabel("held-out mIoU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    ax.set_title(f"mean ± sd over {max(c['seeds'] for c in curve.values())} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
