"""PHI canary: plant a unique value in every identifying place of a classic and an Enhanced CT, export
through the code the tab and the command line use, and find none of them (nor any source UID) in
the output bytes, for the default and for every spelling of "false" sent as keep_identifiers."""
from __future__ import annotations

import datetime as dt
import itertools
import shutil
import subprocess

import gradio as gr
import numpy as np
import pydicom
import pydicom.config
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from adapters.common.errors import BadInput
from adapters.filter2noise import io
from adapters.filter2noise.config import check_flag
from adapters.filter2noise.deid import PSEUDONYM_ID, PSEUDONYM_NAME

ASSETS = __import__("pathlib").Path(__file__).resolve().parents[3] / "assets" / "filter2noise"
WINDOW = "Soft tissue (W400 / L40)"
UID_ROOT = "1.2.999.7777."  # every source UID is under this root: none may reach an output
CT_CLASS, ENHANCED_CLASS = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"
FALSE_SPELLINGS = [False, "false", "False", "FALSE", " no ", "No", "0", 0, 0.0, None]
TRUE_SPELLINGS = [True, "true", "True", "YES", "yes", "1", 1, 1.0]


class Canaries:
    """Unique planted values. Dates all lie in one year of 1931 (an export shifts them by 1-10
    years, so a shifted date can never equal a planted one); every time has its own fraction."""

    def __init__(self):
        self.values: list[str] = []
        self._n = itertools.count(1)

    def text(self, stem="CANARY") -> str:
        value = f"{stem}{next(self._n):03d}"
        self.values.append(value)
        return value

    def name(self) -> str:
        n = next(self._n)
        self.values += [f"CANARYFAMILY{n:03d}", f"CANARYGIVEN{n:03d}"]
        return f"CANARYFAMILY{n:03d}^CANARYGIVEN{n:03d}"

    def date(self) -> str:
        value = (dt.date(1931, 1, 1) + dt.timedelta(days=next(self._n))).strftime("%Y%m%d")
        self.values.append(value)
        return value

    def time(self) -> str:
        n = next(self._n)
        value = f"{(3 + n) % 24:02d}{(7 * n) % 60:02d}{(11 * n) % 60:02d}.{271000 + n:06d}"
        self.values.append(value)
        return value

    def datetime(self) -> str:
        value = self.date() + self.time() + "+0930"
        self.values.append(value[:8 + 6])
        return value

    def uid(self) -> str:
        return f"{UID_ROOT}{next(self._n)}.{next(self._n)}"


def _code(c: Canaries) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = c.text(), c.text("CANARYSCHEME"), c.text()
    return item


def _identification(c: Canaries) -> Dataset:
    """An Operator/Referring Physician Identification item: institution, address, phone, nested codes."""
    item = Dataset()
    item.InstitutionName, item.InstitutionAddress = c.text(), c.text()
    item.PersonTelephoneNumbers, item.PersonAddress = c.text(), c.text()
    item.PersonIdentificationCodeSequence = [_code(c)]
    item.InstitutionCodeSequence = [_code(c)]
    return item


def _plant(ds: Dataset, c: Canaries, study: str, series: str, frame_of_reference: str, sop: str) -> None:
    """Every identifying attribute the profile touches, nested sequences, private tags, overlays."""
    ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sop, study, series
    ds.FrameOfReferenceUID = frame_of_reference
    ds.SynchronizationFrameOfReferenceUID, ds.InstanceCreatorUID = c.uid(), c.uid()
    ds.PatientName, ds.PatientID, ds.IssuerOfPatientID = c.name(), c.text(), c.text()
    ds.PatientBirthDate, ds.PatientBirthTime = c.date(), c.time()
    ds.OtherPatientNames, ds.PatientBirthName, ds.PatientMotherBirthName = c.name(), c.name(), c.name()
    ds.OtherPatientIDsSequence = [Dataset()]
    ds.OtherPatientIDsSequence[0].PatientID, ds.OtherPatientIDsSequence[0].IssuerOfPatientID = c.text(), c.text()
    ds.PatientAddress, ds.PatientTelephoneNumbers, ds.PatientComments = c.text(), c.text(), c.text()
    ds.AdditionalPatientHistory, ds.EthnicGroup, ds.Occupation = c.text(), c.text(), c.text()
    ds.MedicalAlerts, ds.Allergies, ds.MedicalRecordLocator = c.text(), c.text(), c.text()
    ds.AdmissionID, ds.RequestingService, ds.ReasonForStudy = c.text(), c.text(), c.text()
    ds.RequestedProcedureID, ds.RequestedProcedureDescription = c.text(), c.text()
    ds.ClinicalTrialSubjectID, ds.ClinicalTrialSponsorName, ds.ClinicalTrialSiteName = c.text(), c.text(), c.text()
    ds.ContentCreatorName, ds.AcquisitionComments, ds.StudyComments = c.name(), c.text(), c.text()
    ds.CurrentPatientLocation, ds.TimezoneOffsetFromUTC = c.text(), "+0930"
    ds.InstitutionName, ds.InstitutionAddress, ds.InstitutionalDepartmentName = c.text(), c.text(), c.text()
    ds.StationName, ds.DeviceSerialNumber, ds.SoftwareVersions = c.text(), c.text(), c.text()
    ds.OperatorsName, ds.PerformingPhysicianName, ds.ReferringPhysicianName = c.name(), c.name(), c.name()
    ds.ReferringPhysicianAddress, ds.ReferringPhysicianTelephoneNumbers = c.text(), c.text()
    ds.PhysiciansOfRecord, ds.NameOfPhysiciansReadingStudy, ds.RequestingPhysician = c.name(), c.name(), c.name()
    ds.OperatorIdentificationSequence = [_identification(c)]
    ds.ReferringPhysicianIdentificationSequence = [_identification(c)]
    ds.AccessionNumber, ds.StudyID = c.text(), c.text()
    ds.StudyDescription, ds.SeriesDescription, ds.ProtocolName = c.text(), c.text(), c.text()
    ds.ImageComments, ds.DerivationDescription = c.text(), c.text()
    with pydicom.config.disable_value_validation():
        ds.BodyPartExamined = "CANARY free text in a code string"  # not a code string: must not survive
    c.values.append("CANARY free text")
    ds.PerformedProcedureStepID, ds.PerformedProcedureStepDescription = c.text(), c.text()
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = c.date(), c.time()
    ds.InstanceCreationDate, ds.InstanceCreationTime = c.date(), c.time()
    ds.StudyDate, ds.StudyTime, ds.SeriesDate, ds.SeriesTime = c.date(), c.time(), c.date(), c.time()
    ds.AcquisitionDate, ds.AcquisitionTime, ds.ContentDate, ds.ContentTime = c.date(), c.time(), c.date(), c.time()
    ds.AcquisitionDateTime = c.datetime()
    # requests and references to the source study, several levels deep
    request = Dataset()
    request.RequestedProcedureID, request.ScheduledProcedureStepID = c.text(), c.text()
    request.ReasonForTheRequestedProcedure = c.text()
    referenced_study = Dataset()
    referenced_study.ReferencedSOPClassUID, referenced_study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", study
    request.ReferencedStudySequence = [referenced_study]
    ds.RequestAttributesSequence = [request]
    raw = Dataset()
    raw.StudyInstanceUID = study
    raw_series = Dataset()
    raw_series.SeriesInstanceUID = series
    raw_sop = Dataset()
    raw_sop.ReferencedSOPClassUID, raw_sop.ReferencedSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.66", c.uid()
    raw_series.ReferencedSOPSequence = [raw_sop]
    raw.ReferencedSeriesSequence = [raw_series]
    ds.ReferencedRawDataSequence = [raw]
    source = Dataset()
    source.ReferencedSOPClassUID, source.ReferencedSOPInstanceUID = CT_CLASS, c.uid()
    ds.SourceImageSequence = [source]
    ds.ReferencedImageSequence = [source]
    # private tags, one holding a nested private sequence
    block = ds.private_block(0x0029, "CANARY CREATOR", create=True)
    block.add_new(0x10, "LO", c.text())
    inner = Dataset()
    inner.add_new(0x00291010, "LO", c.text())
    inner.PatientName = c.name()
    block.add_new(0x11, "SQ", Sequence([inner]))
    # an overlay with a description
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60000022, "LO", c.text())


def _file_meta(c: Canaries, sop_class: str, sop: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID, meta.ImplementationVersionName = c.uid(), "CANARYIMPL"
    meta.SourceApplicationEntityTitle, meta.SendingApplicationEntityTitle = "CANARYSOURCEAE", "CANARYSENDAE"
    meta.ReceivingApplicationEntityTitle = "CANARYRECVAE"
    c.values += ["CANARYIMPL", "CANARYSOURCEAE", "CANARYSENDAE", "CANARYRECVAE", "CANARYPREAMBLE"]
    return meta


def _pixels(frames: int, size: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.zeros((size, size), np.float64)
    base[8:24, 8:24] = 60
    return np.stack([base + 20 * i + rng.normal(0, 15, base.shape) for i in range(frames)]).round().astype(np.int16) + 1000


def _image_pixel(ds: Dataset, stack: np.ndarray) -> None:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = stack.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = stack.tobytes()


def classic_ct(tmp_path, c: Canaries, name="classic.dcm", study=None, series=None, frame_of_reference=None,
               instance=1, seed=0):
    """A classic CT Image with every canary planted; returns (path, HU)."""
    study, series = study or c.uid(), series or c.uid()
    frame_of_reference, sop = frame_of_reference or c.uid(), c.uid()
    ds = Dataset()
    ds.file_meta = _file_meta(c, CT_CLASS, sop)
    ds.preamble = b"CANARYPREAMBLE".ljust(128, b"\0")  # a preamble can carry text too
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.Modality, ds.ImageType = CT_CLASS, "CT", ["ORIGINAL", "PRIMARY", "AXIAL"]
    _plant(ds, c, study, series, frame_of_reference, sop)
    ds.SeriesNumber, ds.InstanceNumber, ds.AcquisitionNumber, ds.PatientSex = 3, instance, 1, "O"
    ds.PixelSpacing, ds.SliceThickness = [0.7, 0.8], 1.25
    ds.ImagePositionPatient, ds.ImageOrientationPatient = [-10, -20, 5.0 * instance], [1, 0, 0, 0, 1, 0]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
    ds.WindowCenter, ds.WindowWidth, ds.KVP = 40, 400, 120
    stack = _pixels(1, seed=seed)
    _image_pixel(ds, stack[0])
    path = tmp_path / name
    ds.save_as(path, enforce_file_format=True)
    return path, stack[0].astype(np.float32) - 1024


def enhanced_ct(tmp_path, c: Canaries, frames=3):
    """An Enhanced CT with shared and per-frame functional groups, canaries at several depths."""
    study, series, frame_of_reference, sop = c.uid(), c.uid(), c.uid(), c.uid()
    ds = Dataset()
    ds.file_meta = _file_meta(c, ENHANCED_CLASS, sop)
    ds.preamble = b"CANARYPREAMBLE".ljust(128, b"\0")  # a preamble can carry text too
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.Modality = ENHANCED_CLASS, "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    _plant(ds, c, study, series, frame_of_reference, sop)
    ds.SeriesNumber, ds.InstanceNumber, ds.NumberOfFrames = 4, 1, frames
    ds.Manufacturer, ds.ManufacturerModelName = "ACME", "CT-1"
    ds.ContentQualification, ds.BurnedInAnnotation = "PRODUCT", "NO"
    organization = c.uid()
    ds.DimensionOrganizationSequence = [Dataset()]
    ds.DimensionOrganizationSequence[0].DimensionOrganizationUID = organization
    index = Dataset()
    index.DimensionOrganizationUID, index.DimensionIndexPointer = organization, 0x00209057
    index.FunctionalGroupPointer, index.DimensionDescriptionLabel = 0x00209111, c.text()
    ds.DimensionIndexSequence = [index]
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing, measures.SliceThickness = [0.5, 0.6], 1
    measures.InstitutionName = c.text()  # not allowed in a kept item: dropped
    measures.add_new(0x00291000 | 0x10, "LO", "x")  # a stray private element in a kept item
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    frame_type = Dataset()
    frame_type.FrameType = ["ORIGINAL", "PRIMARY", "AXIAL", "NONE"]
    shared.CTImageFrameTypeSequence = [frame_type]
    shared.FrameVOILUTSequence = [Dataset()]
    shared.FrameVOILUTSequence[0].WindowCenter, shared.FrameVOILUTSequence[0].WindowWidth = 40, 400
    shared.IrradiationEventIdentificationSequence = [Dataset()]
    shared.IrradiationEventIdentificationSequence[0].IrradiationEventUID = c.uid()
    reconstruction = Dataset()
    reconstruction.ReconstructionAlgorithm, reconstruction.ContentCreatorName = "ITERATIVE", c.name()
    shared.CTReconstructionSequence = [reconstruction]
    anatomy = Dataset()
    anatomy.FrameLaterality = "U"
    region = Dataset()
    region.CodeValue, region.CodingSchemeDesignator, region.CodeMeaning = "T-D3000", "SRT", "Chest"
    region.AnatomicRegionModifierSequence = [_code(c)]  # three levels down, not an allowed sequence
    anatomy.AnatomicRegionSequence = [region]
    shared.FrameAnatomySequence = [anatomy]
    shared.OperatorIdentificationSequence = [_identification(c)]
    ds.SharedFunctionalGroupsSequence = [shared]
    per_frame = []
    for i in range(frames):
        item = Dataset()
        content = Dataset()
        content.FrameAcquisitionDateTime, content.FrameReferenceDateTime = c.datetime(), c.datetime()
        content.FrameComments, content.FrameLabel = c.text(), c.text()
        content.FrameAcquisitionNumber, content.DimensionIndexValues, content.StackID = i + 1, [i + 1], "1"
        item.FrameContentSequence = [content]
        position = Dataset()
        position.ImagePositionPatient = [-10, -20, 2.5 * i]
        item.PlanePositionSequence = [position]
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1, -1024 - 100 * i, "HU"
        item.PixelValueTransformationSequence = [transform]
        derivation = Dataset()
        derivation.DerivationDescription = c.text()
        derived_from = Dataset()
        derived_from.ReferencedSOPClassUID, derived_from.ReferencedSOPInstanceUID = CT_CLASS, c.uid()
        derived_from.ReferencedFrameNumber = i + 1
        derivation.SourceImageSequence = [derived_from]
        item.DerivationImageSequence = [derivation]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    stack = _pixels(frames, seed=1)
    _image_pixel(ds, stack)
    path = tmp_path / "enhanced.dcm"
    ds.save_as(path, enforce_file_format=True)
    hu = [stack[i].astype(np.float32) - 1024 - 100 * i for i in range(frames)]
    return path, hu


def _source_uids(path) -> set[str]:
    """Every non-standard UID anywhere in a file, file meta included."""
    found: set[str] = set()
    ds = pydicom.dcmread(path)

    def visit(dataset):
        for elem in dataset:
            if elem.VR == "SQ":
                for item in elem.value:
                    visit(item)
            elif elem.VR == "UI" and elem.value:
                for v in (elem.value if elem.VM > 1 else [elem.value]):
                    if not str(v).startswith("1.2.840.10008."):
                        found.add(str(v))

    visit(ds.file_meta)
    visit(ds)
    return found


def assert_no_phi(out, source, c: Canaries) -> pydicom.Dataset:
    """No planted value and no source UID anywhere in the output's bytes; de-identification recorded."""
    raw = out.read_bytes() if hasattr(out, "read_bytes") else open(out, "rb").read()
    survivors = [v for v in c.values if v.encode() in raw]
    assert not survivors, f"planted values survived: {survivors}"
    assert b"CANARY" not in raw.upper()
    assert UID_ROOT.encode() not in raw
    leaked = [u for u in _source_uids(source) if u.encode() in raw]
    assert not leaked, f"source UIDs survived: {leaked}"
    assert b"+0930" not in raw  # the time-zone offset, also as a DT suffix
    back = pydicom.dcmread(out)
    assert back.PatientIdentityRemoved == "YES" and back.LongitudinalTemporalInformationModified == "MODIFIED"
    assert str(back.PatientName) == PSEUDONYM_NAME and back.PatientID == PSEUDONYM_ID
    assert [item.CodeValue for item in back.DeidentificationMethodCodeSequence] == ["113100", "113107"]
    assert not any(tag.is_private for tag in back.keys())
    assert not any(tag.group & 0xFF00 == 0x6000 for tag in back.keys())
    assert "SourceApplicationEntityTitle" not in back.file_meta
    return back


def test_flags_are_parsed_strictly():
    for value in FALSE_SPELLINGS:
        assert check_flag(value) is False, value
    for value in TRUE_SPELLINGS:
        assert check_flag(value) is True, value
    for value in ("maybe", "", "off?", "2", 2, -1, 0.5, float("nan"), [], "falsey"):
        with pytest.raises(BadInput, match="must be yes or no"):
            check_flag(value, "Keep patient identifiers")


def test_classic_ct_export_carries_no_phi_and_keeps_hu(tmp_path):
    c = Canaries()
    path, hu = classic_ct(tmp_path, c)
    s = io.load_slice(path)
    np.testing.assert_array_equal(s.hu, hu)
    for keep in FALSE_SPELLINGS:
        out = io.save_dicom(s, s.hu, tmp_path / "out.dcm", keep_identifiers=keep)
        back = assert_no_phi(out, path, c)
        np.testing.assert_array_equal(io.load_slice(out).hu, hu)  # HU unchanged after rescale
    for kw in ("PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient", "SliceThickness", "RescaleSlope",
               "RescaleIntercept", "WindowCenter", "WindowWidth", "Modality", "SOPClassUID", "KVP"):
        assert back.get(kw) == pydicom.dcmread(path).get(kw), kw
    assert back.FrameOfReferenceUID and back.StudyInstanceUID and back.StudyDate and back.ContentDate


def test_dates_shift_by_one_offset_and_pairs_move_together(tmp_path):
    c = Canaries()
    path, _ = classic_ct(tmp_path, c)
    src = pydicom.dcmread(path)
    s = io.load_slice(path)
    shifter = io.DateShifter(days=-400, seconds=3600 * 23)
    back = pydicom.dcmread(io.save_dicom(s, s.hu, tmp_path / "o.dcm", dates=shifter))

    def moment(ds, what):
        return dt.datetime.strptime(ds.get(f"{what}Date") + ds.get(f"{what}Time")[:6], "%Y%m%d%H%M%S")

    for what in ("Study", "Series", "Acquisition", "Content"):
        assert moment(back, what) - moment(src, what) == dt.timedelta(days=-400, hours=23), what
    assert back.AcquisitionDateTime.startswith((dt.datetime.strptime(src.AcquisitionDateTime[:14], "%Y%m%d%H%M%S")
                                                + dt.timedelta(days=-400, hours=23)).strftime("%Y%m%d%H%M%S"))
    assert "PatientBirthDate" in back and back.PatientBirthDate == ""


def test_enhanced_ct_frame_export_carries_no_phi_at_any_depth(tmp_path):
    c = Canaries()
    path, hu = enhanced_ct(tmp_path, c)
    s = io.load_slice(path, frame=1)
    np.testing.assert_array_equal(s.hu, hu[1])
    out = io.save_dicom(s, s.hu - 3.2, tmp_path / "frame.dcm")
    back = assert_no_phi(out, path, c)
    np.testing.assert_allclose(io.load_slice(out).hu, np.rint(hu[1] - 3.2), atol=0.5)
    assert int(back.NumberOfFrames) == 1 and back.SOPClassUID == ENHANCED_CLASS
    frame = back.PerFrameFunctionalGroupsSequence[0]
    content = frame.FrameContentSequence[0]
    assert "FrameComments" not in content and "FrameLabel" not in content
    assert content.FrameAcquisitionDateTime[:4] < "1931" and "DerivationImageSequence" not in frame
    shared = back.SharedFunctionalGroupsSequence[0]
    assert "OperatorIdentificationSequence" not in shared and "InstitutionName" not in shared.PixelMeasuresSequence[0]
    assert "AnatomicRegionModifierSequence" not in shared.FrameAnatomySequence[0].AnatomicRegionSequence[0]
    # one mapping: the dimension index still points at the (new) dimension organization
    organization = back.DimensionOrganizationSequence[0].DimensionOrganizationUID
    assert back.DimensionIndexSequence[0].DimensionOrganizationUID == organization
    assert shared.IrradiationEventIdentificationSequence[0].IrradiationEventUID.startswith("1.2.826.0.1.3680043.8.498.")
    assert "ReferencedRawDataSequence" not in back and "SourceImageSequence" not in back


def test_keeping_identifiers_is_explicit_and_stated_in_the_file(tmp_path):
    c = Canaries()
    path, _ = classic_ct(tmp_path, c)
    s = io.load_slice(path)
    for keep in (True, "true", "YES", 1):
        back = pydicom.dcmread(io.save_dicom(s, s.hu, tmp_path / "keep.dcm", keep_identifiers=keep))
        assert back.PatientIdentityRemoved == "NO" and "NOT DE-IDENTIFIED" in back.ImageComments
        assert "NOT DE-IDENTIFIED" in back.DerivationDescription
        assert back.PatientID == pydicom.dcmread(path).PatientID
    with pytest.raises(BadInput, match="must be yes or no"):
        io.save_dicom(s, s.hu, tmp_path / "bad.dcm", keep_identifiers="perhaps")


# --- through the tab's handlers (what the API calls) --------------------------------------------

def _dcm(downloads) -> str:
    return next(p for p in downloads if p.endswith(".dcm"))


def _quiet(*_a, **_k):
    return None


def test_tab_handlers_de_identify_for_every_spelling_of_false(tmp_path, monkeypatch):
    import tabs.filter2noise as tab
    from studio import device

    monkeypatch.setenv("STUDIO_MODEL_SOURCE", "bundled")
    c = Canaries()
    path, hu = enhanced_ct(tmp_path, c)
    session = None
    for keep in (False, "false"):  # 10 iterations: the slider's minimum (it used to divide by zero)
        out = tab.run(str(path), None, 2, WINDOW, 400, 40, 10, 250.0, keep, progress=_quiet)
        *_, downloads, status, session = out
        assert "Done in" in status and "10 iterations" in status and "de-identified" in status
        assert_no_phi(_dcm(downloads), path, c)
        np.testing.assert_allclose(io.load_slice(_dcm(downloads)).hu, np.rint(session.denoised_hu), atol=0.51)
    for keep in FALSE_SPELLINGS:
        *_, downloads, status, _ = tab.reset_region(WINDOW, 400, 40, keep, session)
        assert_no_phi(_dcm(downloads), path, c)
        assert "NOT de-identified" not in status
        *_, downloads, status, _ = tab.edit_region(None, "4,4,20,20", 2.0, WINDOW, 400, 40, keep, session)
        assert_no_phi(_dcm(downloads), path, c)
    *_, downloads, status, _ = tab.reset_region(WINDOW, 400, 40, "true", session)
    assert "keeps the patient identifiers" in status and "NOT de-identified" in status
    assert pydicom.dcmread(_dcm(downloads)).PatientIdentityRemoved == "NO"
    classic, _ = classic_ct(tmp_path, c)
    for keep in (False, "False", "0", 0):
        *_, downloads, status, session = tab.run(str(classic), None, None, WINDOW, 400, 40, 10, 250.0, keep,
                                                 progress=_quiet)
        assert "de-identified" in status
        assert_no_phi(_dcm(downloads), classic, c)
        np.testing.assert_allclose(io.load_slice(_dcm(downloads)).hu, np.rint(session.denoised_hu), atol=0.51)
    for bad in ("maybe", "2", 0.5):
        with device.recording_calls() as calls, pytest.raises(gr.Error, match="must be yes or no"):
            tab.run(str(path), None, 2, WINDOW, 400, 40, 10, 250.0, bad, progress=_quiet)
        assert not calls  # refused before any device work
        with pytest.raises(gr.Error, match="must be yes or no"):
            tab.reset_region(WINDOW, 400, 40, bad, session)


def test_series_export_shares_one_set_of_new_uids_and_no_phi(tmp_path):
    from adapters.filter2noise import cli

    c = Canaries()
    src, out_dir = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    study, series, frame_of_reference = c.uid(), c.uid(), c.uid()
    sources = [classic_ct(src, c, f"s{i}.dcm", study, series, frame_of_reference, instance=i + 1, seed=i)[0]
               for i in range(2)]
    written, problems = cli.denoise_folder(src, out_dir, iterations=3, keep_identifiers="false", progress=False)
    assert len(written) == 2 and not problems
    backs = [assert_no_phi(p, s, c) for p, s in zip(written, sources)]
    for kw in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        values = {str(b.get(kw)) for b in backs}
        assert len(values) == 1 and values != {str(pydicom.dcmread(sources[0]).get(kw))}, kw

    def moment(ds):
        return dt.datetime.strptime(ds.StudyDate + ds.StudyTime[:6], "%Y%m%d%H%M%S")

    shifts = {moment(b) - moment(pydicom.dcmread(s)) for b, s in zip(backs, sources)}
    assert len(shifts) == 1 and shifts != {dt.timedelta(0)}  # one date offset for the whole series
    assert backs[0].SOPInstanceUID != backs[1].SOPInstanceUID
    with pytest.raises(BadInput, match="must be yes or no"):
        cli.denoise_folder(src, out_dir, iterations=3, keep_identifiers="nope", progress=False)


def _dciodvfy_errors(path) -> set[str]:
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    lines = (result.stdout + result.stderr).splitlines()
    return {line.strip() for line in lines if line.startswith("Error")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None,
                    reason="dciodvfy (Debian package dicom3tools) is not installed; `apt-get install -y dicom3tools`")
def test_export_adds_no_dciodvfy_error(tmp_path):
    """The bundled examples (and the canary Enhanced CT, itself incomplete: only errors it lacks count)."""
    enhanced, _ = enhanced_ct(tmp_path, Canaries())
    sources = ((ASSETS / "CT_small.dcm", None), (ASSETS / "CT_small_I0_5e3.dcm", None),
               (io.pydicom_test_file("CT_small.dcm"), None), (enhanced, 0), (enhanced, 2))
    for source, frame in sources:
        s = io.load_slice(source, frame)
        for keep in (False, True):
            out = io.save_dicom(s, s.hu - 5, tmp_path / f"out_{keep}.dcm", keep_identifiers=keep)
            added = _dciodvfy_errors(out) - _dciodvfy_errors(source)
            assert not added, (source.name, keep, added)
