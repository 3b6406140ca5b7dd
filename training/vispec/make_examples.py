"""Write the ViSpec tab's example pictures: three held-out synthetic scenes and a real photograph.

    python -m training.vispec.make_examples
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from adapters.vlm.scenes import make_scene

OUT = Path(__file__).resolve().parents[2] / "assets" / "vispec" / "examples"
SCENES = {"scene_gravel.png": 7001, "scene_print.png": 7004, "scene_cameraman.png": 7010}  # held-out split, outside the bench's scenes


def main() -> None:
    from skimage import data

    OUT.mkdir(parents=True, exist_ok=True)
    for name, seed in SCENES.items():
        Image.fromarray(make_scene(seed, "heldout").image).save(OUT / name)
    Image.fromarray(data.chelsea()).resize((300, 200)).save(OUT / "cat.png")


if __name__ == "__main__":
    main()
