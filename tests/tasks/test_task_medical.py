"""DICOM and NIfTI slices load as images in [-1, 1] (files written here with pydicom and nibabel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.tasks.medical_io import load_dicom, load_medical_image, load_nifti

pydicom = pytest.importorskip("pydicom")
nibabel = pytest.importorskip("nibabel")


def _write_dicom(path: Path, pixels: np.ndarray, *, slope: float = 1.0, intercept: float = -1024.0) -> Path:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = CTImageStorage, meta.MediaStorageSOPInstanceUID, "CT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)
    return path


def test_dicom_slice_loads_with_rescale_and_window(tmp_path: Path) -> None:
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8) * 20  # 0..1260 -> HU -1024..236
    path = _write_dicom(tmp_path / "slice.dcm", pixels)
    image = load_dicom(path)
    assert image.shape == (1, 8, 8) and image.dtype == torch.float32
    assert float(image.min()) == -1.0 and float(image.max()) == 1.0
    windowed = load_dicom(path, window=(0.0, 400.0))  # HU -200..200
    hu = pixels.astype(np.float64) - 1024
    expected = (np.clip(hu, -200, 200) + 200) / 400 * 2 - 1
    np.testing.assert_allclose(windowed[0].numpy(), expected, atol=1e-6)
    assert torch.equal(load_medical_image(path), image)


def test_nifti_volume_slice_and_2d_image_load(tmp_path: Path) -> None:
    volume = np.random.default_rng(0).random((8, 8, 5)).astype(np.float32)
    path = tmp_path / "vol.nii.gz"
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(path))
    image = load_nifti(path, slice_index=1)
    v = volume[:, :, 1].astype(np.float64)
    np.testing.assert_allclose(image[0].numpy(), (v - v.min()) / (v.max() - v.min()) * 2 - 1, atol=1e-6)
    middle = load_medical_image(path)
    assert middle.shape == (1, 8, 8)
    flat = tmp_path / "flat.nii"
    nibabel.save(nibabel.Nifti1Image(volume[:, :, 0], np.eye(4)), str(flat))
    assert load_nifti(flat).shape == (1, 8, 8)
    with pytest.raises(DiffsightError, match="outside the volume"):
        load_nifti(path, slice_index=9)


def test_bad_medical_files_are_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom")
    with pytest.raises(DiffsightError, match="not a readable DICOM"):
        load_dicom(junk)
    with pytest.raises(DiffsightError, match="not a medical image"):
        load_medical_image(junk.with_name("x.png").write_bytes(b"") or junk.with_name("x.png"))
    constant = _write_dicom(tmp_path / "flat.dcm", np.full((4, 4), 7, dtype=np.uint16))
    with pytest.raises(DiffsightError, match="constant"):
        load_dicom(constant)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)  # makes "import pydicom" raise ImportError
    with pytest.raises(DiffsightError, match=r"diffsight\[medical\]"):
        load_dicom(tmp_path / "any.dcm")
