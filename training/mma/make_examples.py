"""Write the MMA tab's example pictures: two held-out-composition scenes and two real photographs.

    python -m training.mma.make_examples
    python -m training.mma.make_examples --out assets/das/examples   # the DAS tab asks the same questions
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from adapters.vlm.scenes import make_scene

OUT = Path(__file__).resolve().parents[2] / "assets" / "mma" / "examples"
SCENES = {"scene_count.png": 5001, "scene_red_triangle.png": 5008}  # held-out split seeds, outside the evaluation set


def main(argv=None) -> None:
    import argparse

    from skimage import data

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=OUT)
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for name, seed in SCENES.items():
        Image.fromarray(make_scene(seed, "heldout").image).save(out / name)
    Image.fromarray(data.coffee()).resize((300, 200)).save(out / "coffee.png")
    Image.fromarray(data.astronaut()).resize((256, 256)).save(out / "astronaut.png")


if __name__ == "__main__":
    main()
