"""A CT series: read it (several DICOM files, a zip of them, a multi-frame DICOM or a 3-D .npy),
order its slices along the patient axis, and write the denoised series back as one consistent,
de-identified DICOM series (one UID mapping and one date offset for every slice, instance numbers
1..n in order, each slice's own position). No gradio here: the tab and the command line share it.
"""
from __future__ import annotations

import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adapters.common.errors import BadInput
from adapters.filter2noise.io import (
    MAX_FILE_BYTES,
    CTSlice,
    DateShifter,
    UIDMapper,
    load_frames,
    load_slice,
    save_dicom,
)

MAX_SLICES = 300  # slices in one series (the tab trains once and applies to each)
MAX_ZIP_MEMBERS = 2000
MAX_ZIP_BYTES = 512 * 2**20  # everything in one zip, inflated


@dataclass
class CTSeries:
    slices: list[CTSlice]
    notes: list[str] = field(default_factory=list)

    @property
    def volume(self) -> np.ndarray:
        return np.stack([s.hu for s in self.slices]).astype(np.float32)

    @property
    def is_dicom(self) -> bool:
        return all(s.kind == "dicom" for s in self.slices)


def _position_key(ct: CTSlice, order: int):
    """Distance along the slice normal (from the orientation), then instance number, then upload order."""
    ds = ct.dataset
    if ds is None:
        return (0.0, 0, order)
    from adapters.filter2noise.io import _functional_item

    position = orientation = None
    plane = _functional_item(ds, ct.frame, "PlanePositionSequence")
    position = (plane or ds).get("ImagePositionPatient")
    turn = _functional_item(ds, ct.frame, "PlaneOrientationSequence")
    orientation = (turn or ds).get("ImageOrientationPatient")
    distance = 0.0
    if position is not None and orientation is not None and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:], float))
        distance = float(np.dot(normal, np.asarray(position, float)))
    return (distance, int(ds.get("InstanceNumber", 0) or 0), order)


def _unzip_bounded(path: Path, into: Path) -> list[Path]:
    """The zip's files, checked before and while extracting: member count, declared and actual
    inflated sizes (a zip bomb stops at the bound), and names (no absolute paths or ..)."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise BadInput("The zip file is corrupt or truncated.") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_ZIP_MEMBERS:
            raise BadInput(f"The zip holds {len(members)} files; the series reader takes at most {MAX_ZIP_MEMBERS}.")
        if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
            raise BadInput(f"The zip inflates to more than {MAX_ZIP_BYTES // 2**20} MB; upload fewer slices.")
        out, total = [], 0
        for index, member in enumerate(members):
            target = into / f"member_{index:05d}"  # never the member's own name (it may carry identifiers)
            with archive.open(member) as src, open(target, "wb") as dst:
                written = 0
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    total += len(chunk)
                    if written > MAX_FILE_BYTES or total > MAX_ZIP_BYTES:
                        raise BadInput(f"A file in the zip inflates beyond the limits ({MAX_FILE_BYTES // 2**20} MB a "
                                       f"file, {MAX_ZIP_BYTES // 2**20} MB in all); it was refused while inflating.")
                    dst.write(chunk)
            out.append(target)
    return out


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def load_series(paths, skip_bad: bool = False) -> CTSeries:
    """A series from one or more paths (files, zips, or a folder; see the module docstring), in
    patient order. ``skip_bad``: a file that cannot be read is left out and named in the notes by
    its position only (never its name, which may carry identifiers) instead of refusing the series."""
    paths = [Path(p) for p in ([paths] if isinstance(paths, (str, Path)) else list(paths or []))]
    if len(paths) == 1 and paths[0].is_dir():
        paths = sorted(p for p in paths[0].rglob("*") if p.is_file())
    if not paths:
        raise BadInput("No series was given: upload several DICOM slices, a zip of them, or a multi-frame DICOM.")
    scratch = Path(tempfile.mkdtemp(prefix="f2n-series-"))
    try:
        files: list[Path] = []
        for path in paths:
            if zipfile.is_zipfile(path):
                files += _unzip_bounded(path, scratch)
            else:
                files.append(path)
        if len(files) > MAX_SLICES and len(files) > 1:
            raise BadInput(f"{len(files)} files were given; a series may have at most {MAX_SLICES} slices.")
        notes: list[str] = []
        if len(files) == 1:
            slices = _single_file_series(files[0], notes)
        else:
            candidates = [f for f in files if _is_dicom_file(f)]
            if len(candidates) < len(files):
                notes.append(f"{len(files) - len(candidates)} file(s) that are not DICOM were left out.")
            slices = []
            for index, f in enumerate(candidates, start=1):
                try:
                    ct = load_slice(f)
                    if ct.frames > 1:
                        raise BadInput("A multi-frame DICOM is a series on its own: upload it alone.")
                except BadInput as exc:
                    if not skip_bad:
                        raise
                    notes.append(f"file {index} of {len(candidates)} skipped: {exc}")
                    continue
                slices.append(ct)
        if not slices:
            raise BadInput("None of the files is a DICOM slice.")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if len(slices) > MAX_SLICES:
        raise BadInput(f"The series has {len(slices)} slices; at most {MAX_SLICES} are supported.")
    shapes = {s.hu.shape for s in slices}
    if len(shapes) > 1:
        raise BadInput(f"The slices differ in size ({', '.join(f'{w}x{h}' for h, w in sorted(shapes))}); "
                       "a series needs one size.")
    series_uids = {str(s.dataset.get("SeriesInstanceUID", "")) for s in slices if s.dataset is not None}
    if len(series_uids) > 1:
        raise BadInput(f"The files belong to {len(series_uids)} different series; upload one series at a time.")
    for ct in slices:  # the HU arrays are decoded: the stored pixels would only double the memory held
        if ct.dataset is not None and "PixelData" in ct.dataset:
            del ct.dataset.PixelData
    order = sorted(range(len(slices)), key=lambda i: _position_key(slices[i], i))
    return CTSeries([slices[i] for i in order], notes)


def _single_file_series(path: Path, notes: list[str]) -> list[CTSlice]:
    with open(path, "rb") as fh:
        head = fh.read(132)
    if head[:6] == b"\x93NUMPY":
        first = load_slice(path, 0)
        slices = [first] + [load_slice(path, i) for i in range(1, first.frames)]
        notes.append(f"A 3-D array of {first.frames} slices (values taken as HU).")
        return slices
    slices = load_frames(path)
    notes.append(f"One multi-frame DICOM of {len(slices)} frames." if len(slices) > 1 else
                 "A single slice: the series has one slice.")
    return slices


def save_series(series: CTSeries, denoised: np.ndarray, out_dir, *, keep_identifiers=False,
                description: str = "Denoised with Filter2Noise") -> list[Path]:
    """One DICOM file per slice, ``slice_0001.dcm``..., forming one series: every slice shares one
    UID mapping (one new Study, Series and Frame of Reference UID) and one date offset; instance
    numbers run 1..n in patient order; each keeps its own position."""
    if not series.is_dicom:
        raise BadInput("DICOM output needs DICOM input (it copies the geometry and rescale from it).")
    if denoised.shape[0] != len(series.slices):
        raise ValueError("one denoised slice per source slice")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    uids, dates = UIDMapper(), DateShifter()
    return [save_dicom(ct, denoised[i], out_dir / f"slice_{i + 1:04d}.dcm", keep_identifiers=keep_identifiers,
                       uids=uids, dates=dates, instance_number=i + 1, description=description)
            for i, ct in enumerate(series.slices)]


def zip_files(files: list[Path], target) -> Path:
    target = Path(target)
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for f in files:
            archive.write(f, arcname=Path(f).name)
    return target
