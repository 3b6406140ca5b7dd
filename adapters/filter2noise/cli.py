"""Denoise a folder of DICOM CT slices (a series) with Filter2Noise, one slice at a time.

    python -m adapters.filter2noise.cli IN_DIR OUT_DIR [--iterations 100] [--edge-weight 250]
                                        [--keep-identifiers] [--threads 1]

Each slice is trained on itself (zero-shot). Outputs are named slice_0001.dcm, ... in the order
of (series, instance number, position), never by the input names, which may carry identifiers.
De-identified by default (`adapters.filter2noise.deid`: the PS3.15 basic profile as an
allow-list); all outputs of one run share one UID mapping and one date offset, so they still form
one series with consistent new Study/Series/Frame of Reference UIDs and intervals. Nothing
identifying is printed: a file that cannot be used is reported by its position in the run and
the reason only.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from adapters.common.errors import BadInput
from adapters.filter2noise import modeling as f2n
from adapters.filter2noise.config import check_flag
from adapters.filter2noise.io import DateShifter, UIDMapper, load_slice, save_dicom


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _order_key(path: Path):
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        position = ds.get("ImagePositionPatient") or [0, 0, 0]
        return (str(ds.get("SeriesInstanceUID", "")), int(ds.get("InstanceNumber", 0) or 0), float(position[2]), str(path))
    except Exception:  # unreadable files sort last and are reported when loaded
        return ("~", 0, 0.0, str(path))


def denoise_folder(in_dir, out_dir, iterations: int = 100, edge_weight: float = 250.0,
                   keep_identifiers: bool = False, progress: bool = True) -> tuple[list[Path], list[str]]:
    """Returns (written files, problems as plain messages)."""
    from tqdm import tqdm

    keep_identifiers = check_flag(keep_identifiers, "keep_identifiers")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise BadInput(f"{in_dir} is not a folder.")
    files = sorted((p for p in in_dir.rglob("*") if p.is_file() and _is_dicom(p)), key=_order_key)
    if not files:
        raise BadInput(f"No DICOM files in {in_dir}.")
    out_dir.mkdir(parents=True, exist_ok=True)
    uids, dates = UIDMapper(), DateShifter()  # one per run: the outputs form one consistent series
    settings = f2n.FitSettings(iterations=iterations, edge_weight=edge_weight)
    written, problems = [], []
    for index, path in enumerate(tqdm(files, desc="Denoising slices", unit="slice", disable=not progress), start=1):
        try:
            ct = load_slice(path)
            if ct.frames > 1:
                raise BadInput(f"multi-frame file ({ct.frames} frames): use the app to pick a frame")
        except BadInput as exc:
            problems.append(f"file {index} of {len(files)} skipped: {exc}")
            continue
        state = f2n.apply_model(f2n.fit(ct.hu, settings).model, ct.hu)
        out = out_dir / f"slice_{index:04d}.dcm"
        save_dicom(ct, state.denoised_hu, out, keep_identifiers=keep_identifiers, uids=uids, dates=dates,
                   description=f"Denoised with Filter2Noise ({iterations} iterations, lambda {edge_weight:g})")
        written.append(out)
    return written, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("in_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--edge-weight", type=float, default=250.0)
    parser.add_argument("--keep-identifiers", action="store_true", help="keep patient identifiers (default: removed)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared machine)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(max(1, args.threads))
    try:
        written, problems = denoise_folder(args.in_dir, args.out_dir, args.iterations, args.edge_weight, args.keep_identifiers)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wrote {len(written)} slice(s) to {args.out_dir}" + (f"; {len(problems)} skipped" if problems else ""))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
