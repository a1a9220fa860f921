""".npy/.npz files: layouts, scaling, key and label choice, and refusals that say what to fix."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from diffsight.data.arrays import load_arrays
from diffsight.errors import DiffsightError


def npy(path: Path, array: np.ndarray) -> Path:
    np.save(path, array)
    return path


def npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


# --- layouts and scaling ---------------------------------------------------------------------------------------


def test_vectors_are_kept_as_given(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(scale=5.0, size=(50, 3))  # float64, well outside [-1, 1]
    data = load_arrays(npy(tmp_path / "v.npy", x))
    assert data.samples.dtype == torch.float32 and data.samples.shape == (50, 3)
    torch.testing.assert_close(data.samples, torch.from_numpy(x).float())
    assert data.labels is None and not data.is_image
    assert data.name == str(tmp_path / "v.npy")
    assert data.source == {
        "origin": "arrays",
        "path": str((tmp_path / "v.npy").resolve()),
        "key": None,
        "labels_key": None,
    }


def test_uint8_hw_images_become_one_channel_in_minus_one_to_one(tmp_path: Path) -> None:
    x = np.zeros((4, 6, 5), dtype=np.uint8)
    x[1] = 255
    x[2] = 51
    data = load_arrays(npy(tmp_path / "g.npy", x))
    assert data.samples.shape == (4, 1, 6, 5)
    torch.testing.assert_close(data.samples.mean(dim=(1, 2, 3)), torch.tensor([-1.0, 1.0, 51 / 255 * 2 - 1, -1.0]))


def test_channels_last_images_are_transposed(tmp_path: Path) -> None:
    x = np.zeros((2, 4, 5, 3), dtype=np.uint8)  # (N, H, W, C)
    x[0, 1, 2] = (255, 0, 255)
    data = load_arrays(npz(tmp_path / "c.npz", x=x))
    assert data.samples.shape == (2, 3, 4, 5)
    assert data.samples[0, :, 1, 2].tolist() == [1.0, -1.0, 1.0]
    assert float(data.samples[1].max()) == -1.0


@pytest.mark.parametrize("channels", [1, 3])
def test_channels_first_images_are_kept(tmp_path: Path, channels: int) -> None:
    x = np.random.default_rng(1).uniform(0.0, 1.0, size=(3, channels, 4, 4)).astype(np.float32)
    data = load_arrays(npy(tmp_path / "f.npy", x))
    assert data.samples.shape == (3, channels, 4, 4)
    torch.testing.assert_close(data.samples, torch.from_numpy(x * 2 - 1))


def test_float_images_in_minus_one_to_one_are_kept(tmp_path: Path) -> None:
    x = np.linspace(-1.0, 1.0, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    data = load_arrays(npy(tmp_path / "f.npy", x))
    torch.testing.assert_close(data.samples, torch.from_numpy(x).float())


def test_float_images_outside_minus_one_to_one_are_refused(tmp_path: Path) -> None:
    x = np.full((2, 1, 4, 4), 200.0)
    with pytest.raises(DiffsightError) as info:
        load_arrays(npy(tmp_path / "f.npy", x))
    message = str(info.value)
    assert "f.npy" in message and "[0, 1]" in message and "[-1, 1]" in message


def test_uint16_images_use_their_full_range(tmp_path: Path) -> None:
    x = np.array([0, 65535], dtype=np.uint16).reshape(2, 1, 1, 1) * np.ones((1, 1, 3, 3), dtype=np.uint16)
    data = load_arrays(npy(tmp_path / "w.npy", x))
    torch.testing.assert_close(data.samples.mean(dim=(1, 2, 3)), torch.tensor([-1.0, 1.0]))


# --- npz keys and labels ---------------------------------------------------------------------------------------


def test_npz_with_x_and_y_maps_arbitrary_label_values(tmp_path: Path) -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    y = np.array([10, 3, 10, 7])
    data = load_arrays(npz(tmp_path / "d.npz", x=x, y=y))
    assert data.class_names == ("3", "7", "10")  # sorted by value
    assert data.labels is not None and data.labels.dtype == torch.int64
    assert data.labels.tolist() == [2, 0, 2, 1]
    assert data.source["key"] == "x" and data.source["labels_key"] == "y"


def test_single_array_npz_is_the_samples(tmp_path: Path) -> None:
    data = load_arrays(npz(tmp_path / "one.npz", whatever=np.ones((3, 2))))
    assert data.samples.shape == (3, 2) and data.labels is None
    assert data.source["key"] == "whatever"


def test_the_only_array_besides_labels_is_the_samples(tmp_path: Path) -> None:
    path = tmp_path / "pos.npz"
    np.savez(path, np.ones((3, 2)), labels=np.array([0, 1, 0]))  # positional: stored as arr_0
    data = load_arrays(path)
    assert data.source["key"] == "arr_0" and data.source["labels_key"] == "labels"
    assert data.labels is not None and data.labels.tolist() == [0, 1, 0]


def test_known_sample_names_are_tried_in_order(tmp_path: Path) -> None:
    path = npz(tmp_path / "k.npz", extra=np.zeros((2, 2)), images=np.ones((3, 4, 4)), other=np.zeros(1))
    data = load_arrays(path)
    assert data.source["key"] == "images" and data.samples.shape == (3, 1, 4, 4)


def test_ambiguous_npz_lists_the_keys_and_asks_for_key(tmp_path: Path) -> None:
    path = npz(tmp_path / "amb.npz", a=np.ones((3, 2)), b=np.ones((3, 2)))
    with pytest.raises(DiffsightError) as info:
        load_arrays(path)
    message = str(info.value)
    assert "amb.npz" in message and "a, b" in message and "key=" in message
    assert load_arrays(path, key="b").source["key"] == "b"


def test_explicit_keys(tmp_path: Path) -> None:
    path = npz(tmp_path / "e.npz", feats=np.ones((3, 2)), cls=np.array([5, 5, 6]), y=np.array([0, 1, 2]))
    data = load_arrays(path, key="feats", labels_key="cls")
    assert data.class_names == ("5", "6") and data.labels is not None and data.labels.tolist() == [0, 0, 1]
    assert load_arrays(path, key="feats").class_names == ("0", "1", "2")  # "y" found without being named


@pytest.mark.parametrize("which", ["key", "labels_key"])
def test_missing_key_lists_the_keys(tmp_path: Path, which: str) -> None:
    path = npz(tmp_path / "m.npz", x=np.ones((3, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DiffsightError) as info:
        load_arrays(path, **{which: "nope"})
    message = str(info.value)
    assert "'nope'" in message and "x, y" in message


def test_key_and_labels_key_must_differ(tmp_path: Path) -> None:
    path = npz(tmp_path / "s.npz", x=np.ones((3, 2)))
    with pytest.raises(DiffsightError, match="both name 'x'"):
        load_arrays(path, key="x", labels_key="x")


def test_npy_takes_no_keys(tmp_path: Path) -> None:
    path = npy(tmp_path / "v.npy", np.ones((3, 2)))
    with pytest.raises(DiffsightError, match="one array"):
        load_arrays(path, labels_key="y")


def test_labels_of_the_wrong_length_are_refused(tmp_path: Path) -> None:
    path = npz(tmp_path / "l.npz", x=np.ones((4, 2)), y=np.array([0, 1, 0]))
    with pytest.raises(DiffsightError) as info:
        load_arrays(path)
    message = str(info.value)
    assert "l.npz" in message and "(4,)" in message and "(3,)" in message


def test_fractional_labels_are_refused_but_whole_floats_are_fine(tmp_path: Path) -> None:
    bad = npz(tmp_path / "bad.npz", x=np.ones((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(DiffsightError, match="integers"):
        load_arrays(bad)
    good = npz(tmp_path / "good.npz", x=np.ones((2, 2)), y=np.array([1.0, 0.0]))
    assert load_arrays(good).labels.tolist() == [1, 0]  # type: ignore[union-attr]


# --- refusals --------------------------------------------------------------------------------------------------


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = [1, 2], [3]
    for path in (npy(tmp_path / "o.npy", ragged), npz(tmp_path / "o.npz", x=ragged)):
        with pytest.raises(DiffsightError) as info:
            load_arrays(path)
        message = str(info.value)
        assert path.name in message and "object arrays" in message and "refused" in message


def test_a_pickle_is_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "p.npy"
    path.write_bytes(pickle.dumps({"x": [1, 2, 3]}))
    with pytest.raises(DiffsightError, match="refused"):
        load_arrays(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="no such file") as info:
        load_arrays(tmp_path / "absent.npz")
    assert "absent.npz" in str(info.value)


def test_wrong_suffix(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("1,2\n")
    with pytest.raises(DiffsightError, match=r"\.npy or \.npz") as info:
        load_arrays(path)
    assert "'.csv'" in str(info.value)


@pytest.mark.parametrize("name", ["junk.npy", "junk.npz"])
def test_corrupt_file_is_named(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\x93NUMPY garbage" if name.endswith(".npy") else b"PK\x03\x04 broken zip")
    with pytest.raises(DiffsightError) as info:
        load_arrays(path)
    message = str(info.value)
    assert name in message and "cannot read" in message


def test_truncated_npy_is_named(tmp_path: Path) -> None:
    path = npy(tmp_path / "t.npy", np.ones((100, 10)))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DiffsightError, match="t.npy"):
        load_arrays(path)


@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5, 6)])
def test_wrong_ndim_is_refused(tmp_path: Path, shape: tuple[int, ...]) -> None:
    with pytest.raises(DiffsightError, match=r"\(N, D\) vectors"):
        load_arrays(npy(tmp_path / "n.npy", np.zeros(shape)))


def test_four_d_without_a_channel_axis_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="1 or 3"):
        load_arrays(npy(tmp_path / "c.npy", np.zeros((2, 5, 5, 5))))


def test_empty_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="empty"):
        load_arrays(npy(tmp_path / "e.npy", np.zeros((0, 3))))


def test_nan_is_refused(tmp_path: Path) -> None:
    x = np.ones((3, 2))
    x[1, 1] = np.nan
    with pytest.raises(DiffsightError, match="NaN") as info:
        load_arrays(npy(tmp_path / "nan.npy", x))
    assert "nan.npy" in str(info.value)


def test_non_numeric_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DiffsightError, match="numeric"):
        load_arrays(npy(tmp_path / "s.npy", np.array([["a", "b"]])))
