"""Reading CT slices into HU and writing the denoised slice back out (DICOM, 16-bit PNG, .npy).

Every problem with an input becomes a `BadInput` with a plain message. Patient identifiers are
never logged or returned in any message; DICOM output is de-identified by default by rule (the
DICOM PS3.15 basic application-level confidentiality profile as an allow-list, see `deid`), with
new UIDs, ImageType DERIVED and a derivation description.
"""
from __future__ import annotations

import copy
import datetime as _dt
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from adapters.common.errors import BadInput
from adapters.filter2noise.deid import (  # noqa: F401  (UIDMapper: re-exported)
    ENHANCED_CLASSES,
    DateShifter,
    UIDMapper,
    deidentified_copy,
)

MIN_SIDE = 16
MAX_SIDE = 2048
# Bounds checked from headers before any pixel is decoded or any deflated byte is kept
MAX_FILE_BYTES = 256 * 2**20  # one upload (a multi-frame DICOM may be large; the web limit is usually lower)
MAX_FRAMES = 1000  # frames of a multi-frame file or slices of a 3-D array
MAX_PIXEL_BYTES = 256 * 2**20  # rows x columns x frames x bytes per sample, as the header states it
HEADER_ROOM_BYTES = 16 * 2**20  # everything in a data set besides its pixels (per-frame groups, overlays)
MAX_INFLATED_BYTES = MAX_PIXEL_BYTES + HEADER_ROOM_BYTES  # a deflated DICOM data set, inflated
LIMITS_TEXT = f"at most {MAX_SIDE}x{MAX_SIDE} pixels a slice, {MAX_FRAMES} frames, {MAX_FILE_BYTES // 2**20} MB"
PNG16_OFFSET = 1024  # 16-bit PNG/TIFF convention (ours, on read and write): value = HU + 1024


@dataclass
class CTSlice:
    hu: np.ndarray  # float32, (rows, cols)
    spacing_mm: tuple[float, float] = (1.0, 1.0)  # (row spacing = y, column spacing = x)
    kind: str = "npy"
    frame: int = 0
    frames: int = 1
    notes: list[str] = field(default_factory=list)
    dataset: object | None = None  # the pydicom Dataset, for writing DICOM back

    @property
    def spacing_known(self) -> bool:
        return self.kind == "dicom"


# --- reading ------------------------------------------------------------------------------------

def _sniff(path: Path) -> str:
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        raise BadInput("The file could not be opened.") from None
    if size > MAX_FILE_BYTES:
        raise BadInput(f"The file is {size / 2**20:.0f} MB; the CT tab reads files up to {MAX_FILE_BYTES // 2**20} MB.")
    if len(head) == 0:
        raise BadInput("The file is empty.")
    if head[128:132] == b"DICM":  # first: a DICOM preamble may itself look like a TIFF header
        return "dicom"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if path.suffix.lower() in (".dcm", ".dicom", ".ima"):
        return "dicom"
    raise BadInput("This is not a file the CT tab can read: upload a DICOM slice (.dcm), a 16-bit "
                   "PNG or TIFF, or a .npy array in HU.")


def check_header_size(width: int, height: int, frames: int = 1, bytes_per_sample: int = 2,
                      what: str = "The image") -> None:
    """Refuse from the header alone, before any pixel is decoded (a small file can declare a huge image)."""
    if min(width, height) < 1 or frames < 1:
        raise BadInput(f"{what} declares {width}x{height} pixels and {frames} frame(s) in its header: it is corrupt.")
    if max(width, height) > MAX_SIDE:
        raise BadInput(f"{what} is {width}x{height} pixels; the largest supported slice is {MAX_SIDE}x{MAX_SIDE} "
                       "(checked from the header, nothing was decoded).")
    if frames > MAX_FRAMES:
        raise BadInput(f"{what} holds {frames} frames; the CT tab reads at most {MAX_FRAMES}.")
    total = width * height * frames * max(1, bytes_per_sample)
    if total > MAX_PIXEL_BYTES:
        raise BadInput(f"{what} would take {total / 2**20:.0f} MB decoded ({width}x{height} x {frames} frames); "
                       f"the limit is {MAX_PIXEL_BYTES // 2**20} MB.")


def png_header(path: Path) -> tuple[int, int, int]:
    """(width, height, bytes per pixel) from a PNG's IHDR chunk, without decoding anything."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(33)
    if len(head) < 33 or head[12:16] != b"IHDR":
        raise BadInput("The PNG file could not be decoded (corrupt or truncated: no image header).")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
    return width, height, max(1, depth // 8) * channels


def check_slice(hu: np.ndarray, what: str = "The image") -> np.ndarray:
    hu = np.asarray(hu)
    if hu.ndim != 2:
        raise BadInput(f"{what} has shape {hu.shape}; a single 2-D slice is needed.")
    if not np.issubdtype(hu.dtype, np.number) or np.issubdtype(hu.dtype, np.complexfloating):
        raise BadInput(f"{what} does not hold real numbers (dtype {hu.dtype}).")
    h, w = hu.shape
    if min(h, w) < MIN_SIDE:
        raise BadInput(f"{what} is {w}x{h} pixels; it must be at least {MIN_SIDE}x{MIN_SIDE}.")
    if max(h, w) > MAX_SIDE:
        raise BadInput(f"{what} is {w}x{h} pixels; the largest supported slice is {MAX_SIDE}x{MAX_SIDE}.")
    hu = hu.astype(np.float32)
    bad = ~np.isfinite(hu)
    if bad.any():
        raise BadInput(f"{what} contains {int(bad.sum())} NaN or infinite values; fix or mask them first.")
    if float(hu.max() - hu.min()) == 0.0:
        raise BadInput(f"{what} is constant ({float(hu.flat[0]):g} everywhere): there is no noise to remove.")
    if hu.min() < -5000 or hu.max() > 40000:
        raise BadInput(f"{what} has values from {hu.min():g} to {hu.max():g}, which are not HU; "
                       "convert it to Hounsfield units first.")
    return hu


def _pick_frame(volume: np.ndarray, frame: int | None, notes: list[str], what: str) -> tuple[np.ndarray, int, int]:
    frames = volume.shape[0]
    index = frames // 2 if frame is None else int(frame)
    if not 0 <= index < frames:
        raise BadInput(f"{what} has {frames} frames (0 to {frames - 1}); frame {index} does not exist.")
    notes.append(f"{what} holds {frames} frames; using frame {index}.")
    return volume[index], index, frames


def load_slice(path, frame: int | None = None) -> CTSlice:
    """Read one slice in HU. ``frame`` picks a frame of a multi-frame file or 3-D array (default:
    the middle one)."""
    path = Path(path)
    kind = _sniff(path)
    if kind == "dicom":
        return _load_dicom(path, frame)
    if kind == "npy":
        return _load_npy(path, frame)
    return _load_raster(path, kind, frame)


def _load_npy(path: Path, frame: int | None) -> CTSlice:
    corrupt = "The .npy file is corrupt or holds Python objects; save a plain numeric array in HU."
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(fh)
    except Exception:
        raise BadInput(corrupt) from None
    if len(shape) in (2, 3):
        rows, cols = shape[-2:]
        check_header_size(cols, rows, shape[0] if len(shape) == 3 else 1, dtype.itemsize, "The array")
    try:  # memory-mapped: only the chosen slice is read
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    except Exception:
        raise BadInput(corrupt) from None
    notes: list[str] = []
    index, frames = 0, 1
    if arr.ndim == 3:
        arr, index, frames = _pick_frame(arr, frame, notes, "The array")
    elif arr.ndim != 2:
        raise BadInput(f"The array has shape {arr.shape}; give a 2-D slice (or a 3-D stack of slices) in HU.")
    arr = np.array(arr)
    return CTSlice(check_slice(arr, "The array"), kind="npy", frame=index, frames=frames, notes=notes)


def _load_raster(path: Path, kind: str, frame: int | None) -> CTSlice:
    import cv2

    notes: list[str] = []
    _check_raster_header(path, kind)
    ok, pages = cv2.imreadmulti(str(path), flags=cv2.IMREAD_UNCHANGED) if kind == "tiff" else (True, None)
    if kind == "tiff":
        if not ok or not pages:
            raise BadInput("The TIFF file could not be decoded (corrupt or an unsupported layout).")
        if len(pages) > 1:
            _, index, _ = _pick_frame(np.arange(len(pages)), frame, notes, "The TIFF")
            img = pages[index]
        else:
            img = pages[0]
    else:
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise BadInput("The PNG file could not be decoded (corrupt or truncated).")
    if img.ndim == 3:
        colour = img[..., :3].astype(np.float64)
        if np.array_equal(colour[..., 0], colour[..., 1]) and np.array_equal(colour[..., 1], colour[..., 2]):
            notes.append("The image is stored as RGB with equal channels; using one channel.")
            img = img[..., 0]
        else:
            notes.append("The image is in colour; it was converted to grey (luminance). CT slices are grey.")
            img = (0.114 * colour[..., 0] + 0.587 * colour[..., 1] + 0.299 * colour[..., 2]).astype(img.dtype)
    if img.dtype == np.uint16:
        hu = img.astype(np.float32) - PNG16_OFFSET
        notes.append(f"16-bit image read as HU = value - {PNG16_OFFSET} (the convention of this tab's PNG export).")
    elif img.dtype == np.uint8:
        hu = img.astype(np.float32) / 255.0 * 4095.0 - 1024.0
        notes.append("8-bit image: grey levels were spread linearly over -1024..3071 HU. They are not real HU, so "
                     "sigma_range and the windows are only nominal; export 16-bit or DICOM for real HU.")
    elif np.issubdtype(img.dtype, np.floating) or img.dtype == np.int16:
        hu = img.astype(np.float32)
        notes.append("Image values are used as HU directly.")
    else:
        raise BadInput(f"Unsupported pixel type {img.dtype}; use 8/16-bit PNG or TIFF, or a .npy array in HU.")
    return CTSlice(check_slice(hu), kind=kind, notes=notes)


def _check_raster_header(path: Path, kind: str) -> None:
    if kind == "png":
        width, height, depth = png_header(path)
        check_header_size(width, height, 1, depth, "The PNG")
        return
    from PIL import Image

    try:
        with Image.open(path) as img:
            (width, height), pages = img.size, getattr(img, "n_frames", 1)
            depth = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}.get(img.mode, len(img.getbands()))
    except Image.DecompressionBombError:
        raise BadInput(f"The TIFF is far too large: the CT tab reads {LIMITS_TEXT}.") from None
    except Exception:
        raise BadInput("The TIFF file could not be decoded (corrupt or an unsupported layout).") from None
    check_header_size(width, height, pages, depth, "The TIFF")


def _functional_item(ds, frame: int, sequence: str):
    """An item of a functional group macro for one frame: per-frame first, then shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq and len(seq) > index:
            items = seq[index].get(sequence)
            if items:
                return items[0]
    return None


DEFLATED = "1.2.840.10008.1.2.1.99"


def _declared_bytes(prefix: bytes) -> int | None:
    """Pixel bytes the data set's own header declares, parsed from the start of the inflated bytes."""
    import pydicom.filereader as reader
    from pydicom.filebase import DicomBytesIO

    try:
        head = reader.read_dataset(DicomBytesIO(prefix), is_implicit_VR=False, is_little_endian=True,
                                   stop_when=lambda tag, vr, length: tag >= 0x7FE00000)
        rows, cols = int(head.Rows), int(head.Columns)
        frames = int(head.get("NumberOfFrames", 1) or 1)
        depth = -(-int(head.get("BitsAllocated", 16) or 16) // 8) * int(head.get("SamplesPerPixel", 1) or 1)
    except Exception:  # header longer than the prefix, or odd: the global bound still applies
        return None
    return rows * cols * frames * depth


def _check_deflated_size(path: Path) -> None:
    """A deflated data set is inflated in chunks that are counted and dropped, so a small file that
    inflates to gigabytes is refused at the bound without ever holding it. The bound is what the
    header (read from the first inflated megabyte) declares plus room for the rest of the header,
    and never more than MAX_INFLATED_BYTES."""
    import pydicom.filereader as reader

    with open(path, "rb") as fh:
        reader.read_preamble(fh, False)
        meta = reader._read_file_meta_info(fh)
        if str(meta.get("TransferSyntaxUID", "")) != DEFLATED:
            return
        inflater, total, limit, prefix = zlib.decompressobj(-zlib.MAX_WBITS), 0, MAX_INFLATED_BYTES, b""
        step = 1 << 20
        while chunk := fh.read(1 << 16):
            data = inflater.decompress(chunk, step)
            while True:
                if prefix is not None:
                    prefix += data
                    if len(prefix) >= step:
                        declared = _declared_bytes(prefix)
                        if declared is not None and declared > MAX_PIXEL_BYTES:
                            raise BadInput(f"The DICOM declares {declared / 2**20:.0f} MB of pixels; the CT tab reads "
                                           f"{LIMITS_TEXT} (checked from the header, nothing was decoded).")
                        if declared is not None:
                            limit = min(limit, declared + HEADER_ROOM_BYTES)
                        prefix = None
                total += len(data)
                if total > limit:
                    raise BadInput(f"The deflated DICOM inflates to more than {limit / 2**20:.0f} MB, more than its "
                                   f"header declares or the CT tab's limit ({LIMITS_TEXT}); it was refused before "
                                   "being inflated.")
                if not inflater.unconsumed_tail:
                    break
                data = inflater.decompress(inflater.unconsumed_tail, step)


def read_dicom_bounded(path: Path, stop_before_pixels: bool = False):
    """The pydicom Dataset, after the header bounds: inflated size (deflated transfer syntax), then
    Rows x Columns x frames x bits from the data set read without its pixel data."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        _check_deflated_size(path)
        head = pydicom.dcmread(str(path), stop_before_pixels=True)
        if not stop_before_pixels and ("Rows" in head or "Columns" in head):
            frames = head.get("NumberOfFrames", 1)
            check_header_size(int(head.get("Columns", 0) or 0), int(head.get("Rows", 0) or 0),
                              int(frames) if str(frames).strip() else 1,
                              -(-int(head.get("BitsAllocated", 16) or 16) // 8) * int(head.get("SamplesPerPixel", 1) or 1),
                              "The DICOM image")
        return head if stop_before_pixels else pydicom.dcmread(str(path))
    except BadInput:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            zlib.error):
        raise BadInput("The DICOM file is corrupt or truncated and could not be parsed.") from None


def _load_dicom(path: Path, frame: int | None) -> CTSlice:
    ds, arr = _dicom_pixels(path)
    notes: list[str] = []
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    index = 0
    if frames > 1:
        arr, index, frames = _pick_frame(arr, frame, notes, "The DICOM")
    elif arr.ndim != 2:
        raise BadInput(f"The DICOM pixel data has shape {arr.shape}; a grey slice is needed.")
    return _dicom_frame(ds, arr, index, frames, notes)


def load_frames(path) -> list[CTSlice]:
    """Every frame of a multi-frame DICOM (or the one slice of a single-frame file), read once."""
    path = Path(path)
    if _sniff(path) != "dicom":
        raise BadInput("A multi-frame series must be a DICOM file.")
    ds, arr = _dicom_pixels(path)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        if arr.ndim != 2:
            raise BadInput(f"The DICOM pixel data has shape {arr.shape}; a grey slice is needed.")
        return [_dicom_frame(ds, arr, 0, 1, [])]
    return [_dicom_frame(ds, arr[i], i, frames, []) for i in range(frames)]


def _dicom_pixels(path: Path):
    ds = read_dicom_bounded(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise BadInput("This DICOM file holds no readable image (no pixel data): it may be truncated or corrupt, "
                       "or it is not an image (a report, a plan, a structure set).")
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise BadInput("This DICOM holds a colour image (e.g. a screenshot); CT denoising needs a grey CT slice.")
    try:
        return ds, ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        syntax = ds.file_meta.get("TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        name = getattr(syntax, "name", str(syntax))
        raise BadInput(f"The pixel data is compressed ({name}) and none of the installed decoders can read it. "
                       "Convert the file to an uncompressed transfer syntax (e.g. `gdcmconv --raw` or "
                       "`dcmdjpeg`) and upload it again.") from exc
    except (ValueError, EOFError, OSError, AttributeError, KeyError, TypeError):
        raise BadInput("The DICOM pixel data is truncated or inconsistent with its header and cannot be read.") from None


def _dicom_frame(ds, arr: np.ndarray, index: int, frames: int, notes: list[str]) -> CTSlice:
    """One frame's HU (its own rescale and spacing where the file has per-frame groups)."""
    item = _functional_item(ds, index, "PixelValueTransformationSequence")
    source = item if item is not None else ds
    slope = float(source.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(source.get("RescaleIntercept", 0.0) or 0.0)
    if "RescaleSlope" not in source and "RescaleIntercept" not in source:
        notes.append("No rescale slope/intercept in the file: stored values are used as HU.")
    hu = arr.astype(np.float64) * slope + intercept
    modality = str(ds.get("Modality", ""))
    if modality and modality != "CT":
        notes.append(f"Modality is {modality}, not CT: values are treated as HU, so sigma_range in HU is only nominal.")
    measures = _functional_item(ds, index, "PixelMeasuresSequence")
    spacing = (measures or ds).get("PixelSpacing", None) or ds.get("ImagerPixelSpacing", None)
    if spacing is not None and len(spacing) == 2 and float(spacing[0]) > 0 and float(spacing[1]) > 0:
        spacing_mm = (float(spacing[0]), float(spacing[1]))
    else:
        spacing_mm = (1.0, 1.0)
        notes.append("No pixel spacing in the file: 1 mm per pixel assumed for the sigma maps.")
    return CTSlice(check_slice(hu, "The DICOM slice"), spacing_mm, "dicom", index, frames, notes, ds)


# --- writing ------------------------------------------------------------------------------------

def save_npy(hu: np.ndarray, path) -> Path:
    np.save(path, np.asarray(hu, np.float32))
    return Path(path)


def save_png16(hu: np.ndarray, path) -> Path:
    import cv2

    values = np.clip(np.rint(np.asarray(hu, np.float64) + PNG16_OFFSET), 0, 65535).astype(np.uint16)
    if not cv2.imwrite(str(path), values):
        raise OSError(f"could not write {path}")
    return Path(path)


def deidentify(ds, uids: UIDMapper, dates: DateShifter | None = None):
    """The de-identified copy of ``ds`` (see `adapters.filter2noise.deid`: an allow-list applied at
    every depth, every UID remapped, dates shifted, a fresh file meta)."""
    return deidentified_copy(ds, uids, dates or DateShifter())


KEPT_NOTE = "NOT DE-IDENTIFIED: patient identifiers were kept at the user's request."


def _stored_values(hu: np.ndarray, slope: float, intercept: float) -> tuple[np.ndarray, bool]:
    stored = np.rint((np.asarray(hu, np.float64) - intercept) / slope)
    signed = stored.min() < 0
    lo, hi = (-32768, 32767) if signed else (0, 65535)
    return np.clip(stored, lo, hi).astype(np.int16 if signed else np.uint16), signed


def save_dicom(source: CTSlice, denoised_hu: np.ndarray, path, *, keep_identifiers=False,
               description: str = "Denoised with Filter2Noise", series_description: str = "Denoised (Filter2Noise)",
               uids: UIDMapper | None = None, dates: DateShifter | None = None,
               instance_number: int | None = None) -> Path:
    """The denoised slice as DICOM with the source's geometry and rescale.

    New SOP and Series Instance UIDs, ImageType DERIVED\\SECONDARY and a derivation description.
    De-identified by default (`deid`: PS3.15 basic profile as an allow-list, one ``uids`` mapper and
    one ``dates`` offset per export; pass the same ones for every slice of a series).
    ``keep_identifiers`` (parsed strictly: the string "false" is False) keeps the source's
    attributes and says so in the file (PatientIdentityRemoved NO, DerivationDescription and
    ImageComments). A frame of a multi-frame file is written as a one-frame object of the same class.
    """
    from adapters.filter2noise.config import check_flag

    keep = check_flag(keep_identifiers, "Keep patient identifiers")
    if source.dataset is None:
        raise BadInput("DICOM output needs a DICOM input (it copies the geometry and rescale from it).")
    ds = copy.deepcopy(source.dataset)
    uids = uids or UIDMapper()
    item = _functional_item(ds, source.frame, "PixelValueTransformationSequence")
    rescale = item if item is not None else ds
    slope = float(rescale.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(rescale.get("RescaleIntercept", 0.0) or 0.0)
    if source.frames > 1:
        ds.NumberOfFrames = 1
        per_frame = ds.get("PerFrameFunctionalGroupsSequence")
        if per_frame and len(per_frame) > source.frame:
            ds.PerFrameFunctionalGroupsSequence = [per_frame[source.frame]]
    original_sop = str(ds.get("SOPInstanceUID", ""))
    original_series = str(ds.get("SeriesInstanceUID", ""))
    if not keep:
        ds = deidentify(ds, uids, dates)
    stored, signed = _stored_values(denoised_hu, slope, intercept)
    ds.set_pixel_data(stored, photometric_interpretation="MONOCHROME2", bits_stored=16, generate_instance_uid=False)
    ds.PixelRepresentation = 1 if signed else 0
    if "NumberOfFrames" in source.dataset:  # a multi-frame IOD needs it (set_pixel_data drops it for one frame)
        ds.NumberOfFrames = 1
    ds.SOPInstanceUID = uids(original_sop + f"/frame{source.frame}")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = uids(original_series)
    if instance_number is not None:  # a series export numbers its slices 1..n in order
        ds.InstanceNumber = int(instance_number)
    image_type = list(ds.get("ImageType", ["DERIVED", "SECONDARY"]))
    if str(ds.get("SOPClassUID", "")) in ENHANCED_CLASSES:
        # Enhanced CT: value 2 is enumerated (PRIMARY only); the frame types say DERIVED too
        image_type[:1] = ["DERIVED"]
        for groups in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
            for group in ds.get(groups) or []:
                for frame_type in group.get("CTImageFrameTypeSequence") or []:
                    if frame_type.get("FrameType"):
                        frame_type.FrameType = ["DERIVED"] + list(frame_type.FrameType)[1:]
    else:
        image_type[:2] = ["DERIVED", "SECONDARY"]
    ds.ImageType = image_type
    ds.SeriesDescription = series_description[:64]
    if keep:
        description = f"{description}. {KEPT_NOTE}"
        ds.ImageComments = KEPT_NOTE
        ds.PatientIdentityRemoved = "NO"
        today = _dt.datetime.now()
        ds.ContentDate, ds.ContentTime = today.strftime("%Y%m%d"), today.strftime("%H%M%S")
    ds.DerivationDescription = description[:1024]
    ds.save_as(str(path), enforce_file_format=True)
    return Path(path)


def pydicom_test_file(name: str) -> Path:
    """A file of pydicom's bundled test data (offline; `get_testdata_file` may try to download)."""
    import pydicom

    path = Path(pydicom.__file__).parent / "data" / "test_files" / name
    if not path.is_file():
        raise FileNotFoundError(f"pydicom does not ship {name}")
    return path
