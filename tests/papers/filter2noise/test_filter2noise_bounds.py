"""Bounds before decode: a tiny file that declares or inflates to a huge image is refused from its
header in well under a second, and the process's peak memory barely moves (measured in a fresh
interpreter, so the high-water mark is this load's alone)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, generate_uid

from adapters.common.errors import BadInput
from adapters.filter2noise import io

REPO = Path(__file__).resolve().parents[3]
PROBE = """
import json, resource, sys, time
from adapters.common.errors import BadInput
from adapters.filter2noise.io import load_slice
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start, cpu = time.perf_counter(), time.process_time()
try:
    load_slice(sys.argv[1])
    message = None
except BadInput as exc:
    message = str(exc)
seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps({"message": message, "seconds": seconds, "cpu_seconds": cpu_seconds, "growth_mb": growth_mb}))
"""


def _probe(path: Path) -> dict:
    """Load in a fresh interpreter: message, wall and CPU seconds, peak RSS growth in MB of that load alone."""
    out = subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, side: int = 20000) -> Path:
    """A valid 8-bit grey PNG of side x side zeros, compressed row by row (about 0.5 MB on disk)."""
    packer, row, parts = zlib.compressobj(9), b"\x00" * (side + 1), []
    for _ in range(side):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts))
                     + _chunk(b"IEND", b""))
    return path


def deflated_bomb(path: Path, inflated_mb: int = 600) -> Path:
    """A deflated-transfer-syntax CT whose header says 512x512 but whose pixel data inflates to
    ``inflated_mb`` MB of zeros (a few hundred kB on disk)."""
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = "1.2.840.10008.5.1.4.1.1.2", generate_uid(), "CT"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 512, 512, 16, 16, 15
    ds.SamplesPerPixel, ds.PixelRepresentation, ds.PhotometricInterpretation = 1, 0, "MONOCHROME2"
    head = pydicom.filebase.DicomBytesIO()
    head.is_little_endian, head.is_implicit_VR = True, False
    pydicom.filewriter.write_dataset(head, ds)
    size = inflated_mb * 2**20
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [packer.compress(head.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + struct.pack("<I", size))]
    block = b"\x00" * 2**22
    for _ in range(size // len(block)):
        parts.append(packer.compress(block))
    parts.append(packer.flush())
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    meta.ImplementationClassUID = generate_uid()
    buffer = pydicom.filebase.DicomBytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    pydicom.filewriter.write_file_meta_info(buffer, meta, enforce_standard=True)
    path.write_bytes(buffer.getvalue() + b"".join(parts))
    return path


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bombs")
    return {"png": huge_png(root / "huge.png"), "dicom": deflated_bomb(root / "bomb.dcm")}


@pytest.mark.parametrize("kind", ["png", "dicom"])
def test_bombs_are_refused_from_the_header_fast_and_small(bombs, kind):
    path = bombs[kind]
    assert path.stat().st_size < 1_000_000  # small on disk: the point of a bomb
    result = _probe(path)
    assert result["message"] is not None, "the bomb was accepted"
    assert ("20000x20000" in result["message"]) if kind == "png" else ("inflates to more than" in result["message"])
    # CPU time: the work the refusal costs (wall time on a machine shared by many jobs is noise on top)
    assert result["cpu_seconds"] < 1.0, result
    assert result["growth_mb"] < 200, result


def test_header_limits_name_the_limit(tmp_path):
    big = np.zeros((3, 2049, 16), np.float32)
    np.save(tmp_path / "tall.npy", big)
    with pytest.raises(BadInput, match="largest supported slice is 2048x2048"):
        io.load_slice(tmp_path / "tall.npy")
    header_only = tmp_path / "lying.png"
    header_only.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", 4000, 300, 16, 0, 0, 0, 0)))
    with pytest.raises(BadInput, match="4000x300 pixels"):
        io.load_slice(header_only)
    many = tmp_path / "many.npy"
    np.lib.format.open_memmap(many, mode="w+", dtype=np.float32, shape=(io.MAX_FRAMES + 1, 16, 16))
    with pytest.raises(BadInput, match=f"at most {io.MAX_FRAMES}"):
        io.load_slice(many)


def test_a_3d_array_reads_only_the_chosen_slice(tmp_path):
    stack = np.stack([np.full((32, 32), v, np.float32) + np.eye(32, dtype=np.float32) for v in (-100, 0, 100)])
    np.save(tmp_path / "stack.npy", stack)
    s = io.load_slice(tmp_path / "stack.npy", 2)
    assert s.frame == 2 and s.frames == 3 and float(s.hu.mean()) == pytest.approx(100 + 1 / 32)
    assert isinstance(s.hu, np.ndarray) and not isinstance(s.hu, np.memmap)


def test_an_honest_deflated_dicom_still_loads(tmp_path):
    ds = pydicom.dcmread(io.pydicom_test_file("CT_small.dcm"))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    s = io.load_slice(tmp_path / "deflated.dcm")
    np.testing.assert_array_equal(s.hu, io.load_slice(io.pydicom_test_file("CT_small.dcm")).hu)
