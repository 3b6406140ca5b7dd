"""What a study's owner takes away: CSV, iMRMC input files, and a summary with bootstrap confidence
intervals and a plot. This is the only place variant names meet the ratings (unblinding).

iMRMC (the FDA's multi-reader multi-case tool, DIDSR/iMRMC) reads free-text header lines, a line
``BEGIN DATA:``, then one ``readerID,caseID,modalityID,score`` row per observation; rows whose
reader is ``-1`` or ``truth`` give case truth, which ROC analysis needs. A quality rating has no
truth, so these files carry none: they are for the package's mean-score (``uStat11``) and
limits-of-agreement analyses, where a truth row would count as a reader. The header avoids the
``N0:``, ``N1:``, ``NR:``, ``NM:`` tokens that iMRMC parses as sizes, except its own ``NR:``/``NM:``.
"""
from __future__ import annotations

import csv
import io
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from studio.study.design import CRITERIA, PREFERENCE, StudyDesign, StudyKind

BOOTSTRAP = 2000
CSV_COLUMNS = ("study_id", "reader_id", "case", "variant", "variant_name", "shown_as", "criterion", "score", "rated_at")
IMRMC_SIZE_TOKENS = re.compile(r"N0:|N1:|NR:|NM:", re.I)


def criterion_title(key: str) -> str:
    return "Preferred (share of cases)" if key == PREFERENCE else CRITERIA[key].question


def csv_text(study_id: str, kind: StudyKind, rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([study_id, r["reader_id"], r["case"], r["variant"], kind.variant(r["variant"]).name,
                         r["letter"], r["criterion"], r["score"], r["rated_at"]])
    return out.getvalue()


def imrmc_text(design: StudyDesign, kind: StudyKind, rows: list[dict], criterion: str) -> str:
    """One criterion's ratings in iMRMC's input format (no truth rows: see the module's note)."""
    chosen = [r for r in rows if r["criterion"] == criterion]
    readers = sorted({r["reader_id"] for r in chosen})
    scale = "1 if preferred, else 0" if criterion == PREFERENCE else "1 to 5, higher is better"
    header = [
        f"Reader study {_safe(design.name)} exported by Adapter Studio",
        f"Criterion {_safe(criterion_title(criterion))}; score {scale}",
        "Cases are salted hashes of the images; modalities are the compared variants",
        *(f"Modality {v} is {_safe(kind.variant(v).name)}" for v in design.variants),
        "No truth rows: quality ratings without a reference standard (for uStat11 and limits of agreement, not ROC)",
    ]
    header = [IMRMC_SIZE_TOKENS.sub(lambda m: m.group(0)[:-1] + " :", line) for line in header]
    lines = header + [f"NR: {len(readers)}", f"NM: {len(design.variants)}", "BEGIN DATA:"]
    lines += [f"{r['reader_id']},{r['case']},{r['variant']},{r['score']}"
              for r in sorted(chosen, key=lambda r: (r["reader_id"], r["case"], r["variant"]))]
    return "\n".join(lines) + "\n"


def _safe(text: str) -> str:
    return " ".join(str(text).replace(",", ";").split())


@dataclass(frozen=True)
class Estimate:
    mean: float
    low: float  # 95% bootstrap interval
    high: float
    n: int  # observations behind the mean


def score_cube(rows: list[dict], criterion: str, variants: tuple[str, ...]):
    """readers x cases x variants, NaN where a reader has not rated."""
    chosen = [r for r in rows if r["criterion"] == criterion]
    readers = sorted({r["reader_id"] for r in chosen})
    cases = sorted({r["case"] for r in chosen})
    cube = np.full((len(readers), len(cases), len(variants)), np.nan)
    for r in chosen:
        cube[readers.index(r["reader_id"]), cases.index(r["case"]), variants.index(r["variant"])] = r["score"]
    return cube, readers, cases


def wins(rows: list[dict], design: StudyDesign):
    """Who won each (reader, case): the preference pick when asked, else the best mean rating over
    the criteria with ties shared. Same shape as `score_cube`."""
    if design.preference:
        return score_cube(rows, PREFERENCE, design.variants)
    cubes = [score_cube(rows, c, design.variants) for c in design.criteria]
    readers, cases = cubes[0][1], cubes[0][2]
    mean = np.nanmean(np.stack([c[0] for c in cubes]), axis=0)
    best = np.nanmax(mean, axis=2, keepdims=True)
    top = (mean == best).astype(float)
    return top / top.sum(axis=2, keepdims=True), readers, cases


def bootstrap(cube: np.ndarray, draws: int = BOOTSTRAP, seed: int = 0) -> list[Estimate]:
    """Per variant: the mean over readers and cases, and a 95% percentile interval from resampling
    readers and cases with replacement (both are random effects in a reader study)."""
    n_readers, n_cases, n_variants = cube.shape
    rng = np.random.default_rng(seed)
    means = np.empty((draws, n_variants))
    for b in range(draws):
        r = rng.integers(0, n_readers, n_readers)
        c = rng.integers(0, n_cases, n_cases)
        sample = cube[r][:, c]
        with warnings.catch_warnings():  # a draw may hold no rating of a variant: NaN, dropped below
            warnings.simplefilter("ignore", RuntimeWarning)
            means[b] = np.nanmean(sample.reshape(-1, n_variants), axis=0)
    out = []
    for v in range(n_variants):
        observed = cube[..., v]
        finite = means[:, v][np.isfinite(means[:, v])]
        low, high = (np.percentile(finite, [2.5, 97.5]) if finite.size else (np.nan, np.nan))
        count = int(np.isfinite(observed).sum())
        out.append(Estimate(float(np.nanmean(observed)) if count else float("nan"), float(low), float(high), count))
    return out


@dataclass(frozen=True)
class Summary:
    readers: int
    cases: int
    table: dict  # {measure title: [Estimate per variant]}
    short: dict  # {measure title: a column heading short enough for a phone}


def summarise(design: StudyDesign, rows: list[dict], draws: int = BOOTSTRAP) -> Summary:
    table, short = {}, {}
    for c in design.criteria:
        title = f"Mean rating: {CRITERIA[c].question}"
        table[title] = bootstrap(score_cube(rows, c, design.variants)[0], draws)
        short[title] = c.capitalize()
    if rows:
        cube, readers, cases = wins(rows, design)
        title = "Win rate" + (" (preferred)" if design.preference else " (best mean rating, ties shared)")
        table[title], short[title] = bootstrap(cube, draws), "Win rate"
    return Summary(len({r["reader_id"] for r in rows}), len({r["case"] for r in rows}), table, short)


def summary_markdown(summary: Summary, design: StudyDesign, kind: StudyKind) -> str:
    """One row per method (names wrap well on a phone), one short column per measure."""
    if not summary.readers:
        return "No ratings yet."
    titles = list(summary.table)
    lines = [f"{summary.readers} reader(s), {summary.cases} case(s) rated. Means with 95% bootstrap intervals "
             f"(readers and cases resampled, {BOOTSTRAP} draws).", "",
             "| Method | " + " | ".join(summary.short[t] for t in titles) + " |", "|---|" + "---|" * len(titles)]
    for i, v in enumerate(design.variants):
        cells = []
        for t in titles:
            e = summary.table[t][i]
            cells.append(f"{100 * e.mean:.0f}% [{100 * e.low:.0f}, {100 * e.high:.0f}]" if t.startswith("Win rate")
                         else f"{e.mean:.2f} [{e.low:.2f}, {e.high:.2f}]")
        lines.append(f"| {kind.variant(v).name} | " + " | ".join(cells) + " |")
    lines += ["", "; ".join(f"{summary.short[t]}: {t}" for t in titles) + " (ratings 1-5, higher is better)."]
    return "\n".join(lines)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def summary_plot(summary: Summary, design: StudyDesign, kind: StudyKind, width: int = 760) -> np.ndarray:
    """One panel per measure: a bar per variant at its mean with its interval as a whisker."""
    names = [kind.variant(v).name for v in design.variants]
    panels = list(summary.table.items())
    row_h, pad, label_w = 22, 34, 300  # pad: room for the label Gradio lays over the top-left corner
    panel_h = 46 + row_h * len(names)
    image = Image.new("RGB", (width, pad + panel_h * max(1, len(panels))), "white")
    draw = ImageDraw.Draw(image)
    font, bold = _font(13), _font(14)
    x0, x1 = label_w, width - 40
    for p, (title, estimates) in enumerate(panels):
        share = title.startswith("Win rate")
        lo, hi = (0.0, 1.0) if share else (1.0, 5.0)
        top = pad + p * panel_h
        draw.text((10, top), title, fill="black", font=bold)

        def x(value, lo=lo, hi=hi):
            return x0 + (x1 - x0) * (min(max(value, lo), hi) - lo) / (hi - lo)

        for i, (name, e) in enumerate(zip(names, estimates)):
            y = top + 42 + i * row_h
            draw.text((10, y + 3), name if len(name) <= 40 else name[:39] + "…", fill="black", font=font)
            if not np.isfinite(e.mean):
                continue
            draw.rectangle([x0, y + 4, x(e.mean), y + row_h - 4], fill=COLOURS[i % len(COLOURS)])
            if np.isfinite(e.low):
                mid = y + row_h // 2
                draw.line([x(e.low), mid, x(e.high), mid], fill="black", width=2)
                for v in (e.low, e.high):
                    draw.line([x(v), mid - 5, x(v), mid + 5], fill="black", width=2)
        for tick in np.linspace(lo, hi, 5):
            draw.text((x(tick) - 8, top + 22), f"{100 * tick:.0f}%" if share else f"{tick:g}", fill=(90, 90, 90), font=font)
    return np.asarray(image)
