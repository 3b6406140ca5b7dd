"""Synthetic scenes for teaching a frozen language model to read frozen vision features.

Each scene is a 224 px picture: a window cut from a REAL photograph bundled with scikit-image
(brick, grass, gravel, moon, camera, coffee beans..., toned down so the objects stand out) with
one to five flat-coloured objects drawn on it (shape x colour x size, at random non-overlapping
places). Every scene comes with a caption and question/answer pairs of six types (colour, shape,
count, left/right, above/below, yes/no), answers one word each.

Held-out compositions: the colour-shape pairs in `HELDOUT_PAIRS` and the shape-count pairs in
`HELDOUT_COUNTS` never occur in a ``train`` scene; every ``heldout`` scene contains at least one
of them and its questions are about them. A model that answers them learned colour, shape and
count separately, not the pairs it saw. The same seed gives the same scenes.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

SIZE = 224
COLOURS = {"red": (215, 40, 35), "green": (40, 175, 60), "blue": (40, 80, 220), "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": (13, 18), "large": (24, 32)}  # radius range in pixels
HELDOUT_PAIRS = frozenset({("red", "triangle"), ("green", "circle"), ("blue", "square")})
HELDOUT_COUNTS = frozenset({("circle", 3), ("triangle", 2)})
BACKGROUNDS = ("brick", "grass", "gravel", "moon", "camera", "text", "rocket", "chelsea")
SPLITS = ("train", "heldout")
QUESTION_TYPES = ("colour", "shape", "count", "leftright", "abovebelow", "yesno")
CHANCE = {"colour": 1 / len(COLOURS), "shape": 1 / len(SHAPES), "count": 1 / 3, "leftright": 0.5,
          "abovebelow": 0.5, "yesno": 0.5}
NUMBER_WORDS = {1: "one", 2: "two", 3: "three"}
MARGIN = 28  # centres this far apart (pixels) count as left/right or above/below


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: int
    y: int
    radius: int


@dataclass(frozen=True)
class QA:
    kind: str
    question: str
    answer: str


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # 224 x 224 x 3 uint8
    background: str
    objects: tuple[SceneObject, ...]
    caption: str
    qa: tuple[QA, ...]


@functools.lru_cache(maxsize=None)
def photograph(name: str) -> np.ndarray:
    """A bundled scikit-image photograph as HxWx3 float32 in [0, 1]."""
    from skimage import data

    img = np.asarray(getattr(data, name)(), np.float32) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def background(rng: np.random.Generator, name: str) -> np.ndarray:
    """A 224 px window of the photograph (random place, scale and mirror), desaturated and
    compressed towards mid-grey so that flat saturated objects stay readable on it."""
    from PIL import Image

    photo = photograph(name)
    h, w = photo.shape[:2]
    side = int(rng.integers(min(h, w) // 3, min(h, w) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    crop = photo[top:top + side, left:left + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    crop = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize((SIZE, SIZE), Image.BILINEAR),
                      np.float32) / 255.0
    grey = crop.mean(axis=2, keepdims=True)
    toned = 0.35 * crop + 0.65 * grey
    return 0.3 + 0.4 * toned


def _mask(shape: str, x: int, y: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    if shape == "circle":
        return (xx - x) ** 2 + (yy - y) ** 2 <= r * r
    if shape == "square":
        s = int(round(r * 0.85))
        return (abs(xx - x) <= s) & (abs(yy - y) <= s)
    # an upward triangle inscribed in the circle of radius r
    top, base = y - r, y + r * 0.6
    half = (yy - top) / max(base - top, 1) * r * 0.95
    return (yy >= top) & (yy <= base) & (abs(xx - x) <= half)


def draw(bg: np.ndarray, objects) -> np.ndarray:
    img = bg.copy()
    for obj in objects:
        m = _mask(obj.shape, obj.x, obj.y, obj.radius)
        img[m] = np.asarray(COLOURS[obj.colour], np.float32) / 255.0
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def allowed(split: str, objects) -> bool:
    pairs = {(o.colour, o.shape) for o in objects}
    counts = {(s, sum(o.shape == s for o in objects)) for s in SHAPES}
    held = bool(pairs & HELDOUT_PAIRS) or bool(counts & HELDOUT_COUNTS)
    return held if split == "heldout" else not held


def _place(rng: np.random.Generator, specs) -> list[SceneObject] | None:
    placed: list[SceneObject] = []
    for shape, colour, size in specs:
        lo, hi = SIZES[size]
        for _ in range(40):
            r = int(rng.integers(lo, hi + 1))
            x, y = int(rng.integers(r + 4, SIZE - r - 4)), int(rng.integers(r + 4, SIZE - r - 4))
            if all((x - o.x) ** 2 + (y - o.y) ** 2 > (r + o.radius + 6) ** 2 for o in placed):
                placed.append(SceneObject(shape, colour, size, x, y, r))
                break
        else:
            return None
    return placed


def _sample_objects(rng: np.random.Generator, split: str) -> list[SceneObject]:
    while True:
        if split == "heldout" and rng.random() < 0.5:
            # a held-out count: `n` objects of that shape, plus up to two others
            shape, n = sorted(HELDOUT_COUNTS)[int(rng.integers(len(HELDOUT_COUNTS)))]
            specs = [(shape, _colour(rng), _size(rng)) for _ in range(n)]
            others = [s for s in SHAPES if s != shape]
            specs += [(others[int(rng.integers(2))], _colour(rng), _size(rng)) for _ in range(int(rng.integers(0, 3)))]
        elif split == "heldout":
            colour, shape = sorted(HELDOUT_PAIRS)[int(rng.integers(len(HELDOUT_PAIRS)))]
            specs = [(shape, colour, _size(rng))]
            specs += [(SHAPES[int(rng.integers(3))], _colour(rng), _size(rng)) for _ in range(int(rng.integers(1, 4)))]
        else:
            specs = [(SHAPES[int(rng.integers(3))], _colour(rng), _size(rng)) for _ in range(int(rng.integers(1, 6)))]
        if any(sum(s[0] == shape for s in specs) > 3 for shape in SHAPES):
            continue
        objects = _place(rng, specs)
        if objects is not None and allowed(split, objects):
            order = rng.permutation(len(objects))
            return [objects[i] for i in order]


def _colour(rng) -> str:
    return list(COLOURS)[int(rng.integers(len(COLOURS)))]


def _size(rng) -> str:
    return list(SIZES)[int(rng.integers(len(SIZES)))]


def _plural(shape: str, n: int) -> str:
    return shape if n == 1 else shape + "s"


def caption(objects, background_name: str) -> str:
    groups: dict[tuple[str, str], int] = {}
    for o in sorted(objects, key=lambda o: (SHAPES.index(o.shape), list(COLOURS).index(o.colour))):
        groups[(o.colour, o.shape)] = groups.get((o.colour, o.shape), 0) + 1
    parts = [f"{'a' if n == 1 else NUMBER_WORDS[n]} {c} {_plural(s, n)}" for (c, s), n in groups.items()]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"{text[0].upper()}{text[1:]} on {background_name}."


def _unique(objects, **match) -> SceneObject | None:
    hits = [o for o in objects if all(getattr(o, k) == v for k, v in match.items())]
    return hits[0] if len(hits) == 1 else None


def _name(o: SceneObject) -> str:
    return f"{o.colour} {o.shape}"


def questions(rng: np.random.Generator, objects, split: str) -> list[QA]:
    """Every question the scene answers unambiguously; for ``heldout`` only those whose answer
    involves a held-out composition."""
    def held_pair(o):
        return (o.colour, o.shape) in HELDOUT_PAIRS

    counts = {s: sum(o.shape == s for o in objects) for s in SHAPES}
    keep_all = split == "train"
    out: list[QA] = []
    for o in objects:
        if not (keep_all or held_pair(o)):
            continue
        if counts[o.shape] == 1:
            out.append(QA("colour", f"What colour is the {o.shape}?", o.colour))
        if _unique(objects, colour=o.colour):
            out.append(QA("shape", f"What shape is the {o.colour} object?", o.shape))
        out.append(QA("yesno", f"Is there a {_name(o)} in the picture?", "yes"))
        for other in objects:
            if other is o or not (_unique(objects, colour=o.colour, shape=o.shape)
                                  and _unique(objects, colour=other.colour, shape=other.shape)):
                continue
            if abs(o.x - other.x) >= MARGIN:
                out.append(QA("leftright", f"Is the {_name(o)} left or right of the {_name(other)}?",
                              "left" if o.x < other.x else "right"))
            if abs(o.y - other.y) >= MARGIN:
                out.append(QA("abovebelow", f"Is the {_name(o)} above or below the {_name(other)}?",
                              "above" if o.y < other.y else "below"))
    for shape, n in counts.items():
        if 1 <= n and (keep_all or (shape, n) in HELDOUT_COUNTS):
            out.append(QA("count", f"How many {shape}s are there?", str(n)))
    # "no" questions: a pair that is absent (for heldout: an absent held-out pair)
    present = {(o.colour, o.shape) for o in objects}
    pool = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in present
            and (keep_all or (c, s) in HELDOUT_PAIRS)]
    if pool:
        c, s = pool[int(rng.integers(len(pool)))]
        out.append(QA("yesno", f"Is there a {c} {s} in the picture?", "no"))
    return out


def make_scene(seed: int, split: str = "train") -> Scene:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}")
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    name = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    objects = _sample_objects(rng, split)
    image = draw(background(rng, name), objects)
    label = {"text": "printed text", "camera": "a photo of a cameraman", "chelsea": "a cat",
             "rocket": "a rocket"}.get(name, name)
    return Scene(image, name, tuple(objects), caption(objects, label), tuple(questions(rng, objects, split)))
