"""De-identification of an exported CT slice by rule: an allow-list, not a removal list.

Implements the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile as an
allow-list. A new dataset is built that holds only the attributes listed in `KEEP` (what a valid,
viewable CT image needs: pixel and image-plane modules, rescale, windowing, acquisition numbers,
the functional groups of an Enhanced CT) and the sequences in `SEQUENCES` (cleaned item by item
with the same rule, at every depth). Everything else is dropped: names, IDs, addresses,
institutions, operators, free-text descriptions and comments, requests, references to other
objects, private tags, overlays and curves, and the file meta of the source (its
SourceApplicationEntityTitle and implementation UIDs). Then, over the whole rebuilt dataset:

- every UID (VR UI) is remapped through one `UIDMapper` per export, except the standard UIDs
  under the DICOM root 1.2.840.10008 (SOP classes, transfer syntaxes, coding schemes);
- every date, time and date-time (VR DA, TM, DT) is shifted by one random offset per export
  (`DateShifter`); a value that cannot be parsed is removed; time-zone suffixes are dropped;
- code strings (VR CS) that are not well-formed code strings are removed (no free text hides
  in a kept attribute).

Options of the profile (`OPTIONS`, also written into DeidentificationMethod and the tab text):
Retain Longitudinal Temporal Information with Modified Dates ON (dates and times shifted by one
random per-export offset of 1-10 years plus a random time of day, intervals kept); every other
option OFF: no Retain Device Identity (serial number, station name removed; a type 1 serial
number in the Enhanced General Equipment module becomes a dummy), no Retain Institution
Identity, no Retain Patient Characteristics (age, size, weight removed; sex emptied), no Retain
UIDs, no Retain Safe Private, no Clean Descriptors (descriptions and comments cannot be cleaned
automatically, so they are removed, not retained), no Clean Pixel Data / Recognizable Visual
Features (CT pixels are kept as they are; the source's BurnedInAnnotation flag is carried over).
"""
from __future__ import annotations

import datetime as _dt
import re
import secrets

STANDARD_UID_ROOT = "1.2.840.10008."
PSEUDONYM_NAME = "ANONYMOUS^PATIENT"
PSEUDONYM_ID = "ANONYMOUS"

OPTIONS = {
    "Retain Longitudinal Temporal Information with Modified Dates": True,
    "Retain Device Identity": False,
    "Retain Institution Identity": False,
    "Retain Patient Characteristics": False,
    "Retain UIDs": False,
    "Retain Safe Private": False,
    "Clean Descriptors": False,  # descriptors are removed, not cleaned and retained
    "Clean Pixel Data": False,
}
# CID 7050 codes for what was applied (the profile and the one option in force)
METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
METHOD_TEXT = (
    "PS3.15 E.1 Basic Profile, allow-list",
    "Modified Dates: shifted per export",
    "Descriptors removed, private removed",
    "No device/institution/UID retention",
)
SUMMARY = ("De-identified by rule (DICOM PS3.15 Basic Application Level Confidentiality Profile as an allow-list): "
           "only image, geometry, rescale and acquisition attributes are kept, at every depth; names and IDs become "
           f"{PSEUDONYM_NAME} / {PSEUDONYM_ID}; every UID is replaced consistently; dates and times are shifted by one random offset "
           "per export; descriptions, comments, institutions, devices, private tags and the source's file meta are "
           "removed.")

# Attributes copied (then UIDs remapped, dates shifted, code strings checked), at any depth.
KEEP = frozenset({
    # SOP common, general image/series/study structure
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
    "Modality", "SeriesNumber", "InstanceNumber", "AcquisitionNumber", "ImageType", "PatientPosition",
    "PatientOrientation", "Laterality", "ImageLaterality", "BodyPartExamined", "BurnedInAnnotation",
    "RecognizableVisualFeatures", "LossyImageCompression", "LossyImageCompressionRatio",
    "LossyImageCompressionMethod", "PresentationLUTShape", "QualityControlImage", "ContentQualification",
    # dates and times (shifted)
    "StudyDate", "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime",
    "ContentDate", "ContentTime", "AcquisitionDateTime", "FrameAcquisitionDateTime", "FrameReferenceDateTime",
    # frame of reference
    "FrameOfReferenceUID",
    # image pixel
    "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
    "PixelRepresentation", "PlanarConfiguration", "NumberOfFrames",  # PixelData: written by the caller
    # image plane and pixel measures
    "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness", "SliceLocation",
    "SpacingBetweenSlices",
    # rescale and windowing
    "RescaleSlope", "RescaleIntercept", "RescaleType", "WindowCenter", "WindowWidth", "VOILUTFunction",
    # CT image / acquisition numbers
    "KVP", "DataCollectionDiameter", "ReconstructionDiameter", "DistanceSourceToDetector", "DistanceSourceToPatient",
    "GantryDetectorTilt", "TableHeight", "RotationDirection", "ExposureTime", "XRayTubeCurrent", "Exposure",
    "ExposureInuAs", "ExposureInmAs", "FilterType", "GeneratorPower", "FocalSpots", "ConvolutionKernel",
    "RevolutionTime", "SingleCollimationWidth", "TotalCollimationWidth", "TableSpeed", "TableFeedPerRotation",
    "SpiralPitchFactor", "CTDIvol", "ScanOptions", "CalciumScoringMassFactorPatient",
    "Manufacturer", "ManufacturerModelName",
    # Enhanced CT: multi-frame functional groups, dimensions, frame content and CT macros
    "DimensionOrganizationType", "DimensionOrganizationUID", "DimensionIndexPointer", "FunctionalGroupPointer",
    "DimensionIndexValues", "StackID", "InStackPositionNumber", "TemporalPositionIndex", "FrameAcquisitionNumber",
    "FrameAcquisitionDuration", "FrameType", "PixelPresentation", "VolumetricProperties",
    "VolumeBasedCalculationTechnique", "AcquisitionType", "TubeAngle", "ConstantVolumeFlag", "FluoroscopyFlag",
    "ReconstructionAlgorithm", "ConvolutionKernelGroup", "ReconstructionFieldOfView",
    "ReconstructionTargetCenterPatient", "ReconstructionAngle", "ImageFilter", "ReconstructionPixelSpacing",
    "TablePosition", "DataCollectionCenterPatient", "FrameLaterality", "IrradiationEventUID",
    "ExposureModulationType", "EstimatedDoseSaving", "CTDIPhantomTypeCodeSequence",
    # coded values (inside the kept sequences only)
    "CodeValue", "CodingSchemeDesignator", "CodingSchemeVersion", "CodeMeaning",
})
# Sequences whose items are cleaned with the same rule (anything else, e.g. references to the
# source study, requests, identification sequences, is dropped whole).
SEQUENCES = frozenset({
    "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence", "DimensionOrganizationSequence",
    "DimensionIndexSequence", "PixelMeasuresSequence", "PlanePositionSequence", "PlaneOrientationSequence",
    "PixelValueTransformationSequence", "FrameVOILUTSequence", "FrameContentSequence", "CTImageFrameTypeSequence",
    "CTAcquisitionTypeSequence", "CTAcquisitionDetailsSequence", "CTTableDynamicsSequence", "CTGeometrySequence",
    "CTReconstructionSequence", "CTExposureSequence", "CTXRayDetailsSequence", "CTPositionSequence",
    "FrameAnatomySequence", "AnatomicRegionSequence", "IrradiationEventIdentificationSequence",
    "CTDIPhantomTypeCodeSequence",
})
# Type 2 attributes of the Patient and General Study modules: present, empty (profile action Z).
EMPTY_TOP_LEVEL = ("PatientBirthDate", "PatientSex", "ReferringPhysicianName", "AccessionNumber", "StudyID")
# Type 1 in the Enhanced General Equipment module: a dummy value (profile action D), else removed.
ENHANCED_DUMMIES = {"DeviceSerialNumber": "ANONYMIZED", "SoftwareVersions": "ANONYMIZED"}
# Type 2 where the module is present: emptied instead of removed.
EMPTY_IF_PRESENT = ("ContrastBolusAgent", "PositionReferenceIndicator")
ENHANCED_CLASSES = ("1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
                    "1.2.840.10008.5.1.4.1.1.2.2")  # Legacy Converted Enhanced CT

_CS = re.compile(r"^[A-Z0-9 _]{0,16}$")


class UIDMapper:
    """Replacement UIDs, consistent within one export (one salt), unlinkable across exports.

    The same source UID always maps to the same new UID whatever attribute it sits in (a study
    UID and a reference to it stay linked); standard UIDs (SOP classes, transfer syntaxes) are
    returned unchanged."""

    def __init__(self, salt: str | None = None):
        self.salt = salt or secrets.token_hex(16)

    def __call__(self, original: str, purpose: str = "") -> str:  # purpose: kept for old callers, not used
        from pydicom.uid import generate_uid

        original = str(original).strip().rstrip("\0")
        if is_standard_uid(original):
            return original
        return generate_uid(entropy_srcs=[self.salt, original])


def is_standard_uid(uid: str) -> bool:
    return str(uid).startswith(STANDARD_UID_ROOT)


class DateShifter:
    """One random offset per export for every date, time and date-time (intervals are kept)."""

    def __init__(self, days: int | None = None, seconds: int | None = None):
        rng = secrets.SystemRandom()
        self.days = int(days) if days is not None else -rng.randint(366, 3652)
        self.seconds = int(seconds) if seconds is not None else rng.randint(1, 86399)
        self.offset = _dt.timedelta(days=self.days, seconds=self.seconds)

    def datetime(self, value: _dt.datetime) -> _dt.datetime:
        return value.replace(tzinfo=None) + self.offset

    def date(self, value: _dt.date) -> _dt.date:
        return value + _dt.timedelta(days=self.days)

    def time(self, value: _dt.time) -> _dt.time:
        moment = _dt.datetime.combine(_dt.date(2000, 1, 1), value.replace(tzinfo=None)) + _dt.timedelta(seconds=self.seconds)
        return moment.time()


def _fmt_time(t: _dt.time) -> str:
    return t.strftime("%H%M%S") + (f".{t.microsecond:06d}" if t.microsecond else "")


def _fmt_datetime(d: _dt.datetime) -> str:
    return d.strftime("%Y%m%d") + _fmt_time(d.time())


def _parse(vr: str, value):
    from pydicom.valuerep import DA, DT, TM

    text = str(value).strip()
    if not text:
        return None
    return {"DA": DA, "TM": TM, "DT": DT}[vr](text)


def _shift_element(ds, elem, dates: DateShifter) -> None:
    """Shift one DA/TM/DT element in place (with its paired time when it is a date); unparsable: removed."""
    try:
        values = list(elem.value) if elem.VM > 1 else [elem.value]
        out = []
        for value in values:
            parsed = _parse(elem.VR, value)
            if parsed is None:
                out.append("")
            elif elem.VR == "DT":
                out.append(_fmt_datetime(dates.datetime(parsed)))
            elif elem.VR == "DA":
                out.append(dates.date(parsed).strftime("%Y%m%d"))
            else:
                out.append(_fmt_time(dates.time(parsed)))
        elem.value = out if len(out) > 1 else out[0]
    except (ValueError, TypeError, AttributeError, OverflowError):
        del ds[elem.tag]


def _shift_pairs(ds, dates: DateShifter, done: set) -> None:
    """A date with its time of the same name (StudyDate/StudyTime, ...) shifts as one moment."""
    for elem in list(ds):
        if elem.VR != "DA" or not elem.keyword.endswith("Date"):
            continue
        time_kw = elem.keyword[:-4] + "Time"
        if time_kw not in ds or ds.data_element(time_kw).VR != "TM":
            continue
        t_elem = ds.data_element(time_kw)
        try:
            day, clock = _parse("DA", elem.value), _parse("TM", t_elem.value)
        except (ValueError, TypeError, AttributeError):
            continue
        if day is None or clock is None or elem.VM > 1 or t_elem.VM > 1:
            continue
        moment = dates.datetime(_dt.datetime.combine(day, clock.replace(tzinfo=None)))
        elem.value, t_elem.value = moment.strftime("%Y%m%d"), _fmt_time(moment.time())
        done.update((elem.tag, t_elem.tag))


def _copy_allowed(source, dataset_cls):
    """A new dataset with only the allowed attributes and sequences of ``source`` (recursively)."""
    import copy

    from pydicom.datadict import keyword_for_tag
    from pydicom.sequence import Sequence

    out = dataset_cls()
    for tag in list(source.keys()):  # decide on the tag alone: what is dropped is never even decoded
        keyword = "" if tag.is_private else keyword_for_tag(tag)
        if keyword not in SEQUENCES and keyword not in KEEP:
            continue
        try:
            elem = source[tag]
        except Exception:  # an allowed attribute whose value cannot be decoded: dropped, like the rest
            continue
        if keyword in SEQUENCES and elem.VR == "SQ":
            out.add_new(tag, "SQ", Sequence([_copy_allowed(item, dataset_cls) for item in elem.value or []]))
        elif keyword in KEEP and elem.VR != "SQ":
            out.add(copy.deepcopy(elem))
    return out


def _walk(ds, uids: UIDMapper, dates: DateShifter) -> None:
    done: set = set()
    _shift_pairs(ds, dates, done)
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value or []:
                _walk(item, uids, dates)
        elif elem.VR == "UI" and elem.value:
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            mapped = [uids(v) if str(v) else "" for v in values]
            elem.value = mapped if len(mapped) > 1 else mapped[0]
        elif elem.VR in ("DA", "TM", "DT") and elem.tag not in done and elem.value not in (None, ""):
            _shift_element(ds, elem, dates)
        elif elem.VR == "CS" and elem.value not in (None, ""):
            values = list(elem.value) if elem.VM > 1 else [elem.value]
            if not all(_CS.match(str(v)) for v in values):
                del ds[elem.tag]


def deidentified_copy(source, uids: UIDMapper, dates: DateShifter):
    """The allow-listed, remapped, date-shifted copy of ``source`` (a pydicom Dataset) with a fresh
    file meta; the caller sets SOP/Series Instance UIDs, pixel data and derivation text."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    ds = _copy_allowed(source, Dataset)
    _walk(ds, uids, dates)
    sop_class = str(source.get("SOPClassUID", ""))
    enhanced = sop_class in ENHANCED_CLASSES
    ds.PatientName, ds.PatientID = PSEUDONYM_NAME, PSEUDONYM_ID
    for keyword in EMPTY_TOP_LEVEL:
        setattr(ds, keyword, "")
    for keyword in EMPTY_IF_PRESENT:
        if keyword in source:
            setattr(ds, keyword, "")
    if enhanced:
        for keyword, dummy in ENHANCED_DUMMIES.items():
            setattr(ds, keyword, dummy)
        if "AcquisitionContextSequence" in source:
            ds.AcquisitionContextSequence = []
    if "ContentDate" not in ds:  # the date this image was made, shifted like the others (never "now")
        for date_kw in ("AcquisitionDate", "SeriesDate", "StudyDate"):
            if ds.get(date_kw):
                ds.ContentDate = ds.data_element(date_kw).value
                ds.ContentTime = ds.get(date_kw[:-4] + "Time", "") or "000000"
                break
    ds.PatientIdentityRemoved = "YES"
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
    ds.DeidentificationMethod = list(METHOD_TEXT)
    codes = []
    for value, meaning in METHOD_CODES:
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
        codes.append(code)
    ds.DeidentificationMethodCodeSequence = codes
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds
