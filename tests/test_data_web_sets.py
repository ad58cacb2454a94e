"""The online-only image sets ``textures`` (torchvision DTD) and ``places365`` (torchvision
Places365, val, 256x256), on tiny fake copies in torchvision's own layout (no network)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from niood_plugin import data as D
from niood_plugin.data import web_sets
from niood_plugin.errors import DatasetNotFoundError

# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def offline(tmp_path, monkeypatch):
    """No network: torchvision's DTD/Places365 downloads fail as offline and are recorded; the
    default data root is a folder of tmp_path; a clean CWD."""
    import torchvision.datasets.dtd as dtd
    import torchvision.datasets.places365 as places

    calls: list[str] = []

    def fail(url, *args, **kwargs):
        calls.append(url)
        raise RuntimeError("offline (test): no network")

    monkeypatch.setattr(dtd, "download_and_extract_archive", fail)
    monkeypatch.setattr(places, "download_and_extract_archive", fail)
    # the fake files cannot have the real MD5 sums: only their presence is checked
    monkeypatch.setattr(places, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("NIOOD_DATA", str(tmp_path / "default-root"))
    return calls


def write_image(path: Path, fill, size, mode: str = "RGB", fmt: str = "PNG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, fill).save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def write_stripes(path: Path, width: int, height: int) -> None:
    """Red | green | blue vertical thirds: a 64-pixel center crop of the resized image is green."""
    from PIL import Image

    img = Image.new("RGB", (width, height), (0, 255, 0))
    img.paste((255, 0, 0), (0, 0, width // 3, height))
    img.paste((0, 0, 255), (width - width // 3, 0, width, height))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG")


def fake_dtd(root: Path) -> list[str]:
    """``<root>/dtd/dtd/{labels/test1.txt, images/<class>/*.jpg}`` with images of several sizes."""
    base = root / "dtd" / "dtd"
    write_stripes(base / "images" / "banded" / "banded_0001.jpg", 300, 100)        # wide: crop the middle
    write_image(base / "images" / "banded" / "banded_0002.jpg", 200, (50, 90), mode="L")   # gray, tall
    write_image(base / "images" / "woven" / "woven_0001.jpg", (10, 20, 30), (640, 480), fmt="JPEG")
    write_image(base / "images" / "woven" / "woven_0009.jpg", (250, 0, 0), (64, 64))   # train only
    rel = ["banded/banded_0001.jpg", "banded/banded_0002.jpg", "woven/woven_0001.jpg"]
    (base / "labels").mkdir(parents=True)
    (base / "labels" / "test1.txt").write_text("".join(r + "\n" for r in rel))
    (base / "labels" / "train1.txt").write_text("woven/woven_0009.jpg\n")
    return rel


def fake_places(root: Path, n: int = 12) -> None:
    """``<root>/places365/{categories_places365.txt, places365_val.txt, val_256/*.jpg}``; image i
    is the gray level 20 * i (so the kept subset can be read off the pixels)."""
    base = root / "places365"
    base.mkdir(parents=True)
    (base / "categories_places365.txt").write_text("/a/abbey 0\n/a/airfield 1\n")
    lines = []
    for i in range(n):
        name = f"Places365_val_{i + 1:08d}.jpg"
        write_image(base / "val_256" / name, (20 * i,) * 3, (256, 256), fmt="JPEG")
        lines.append(f"{name} {i % 2}\n")
    (base / "places365_val.txt").write_text("".join(lines))


def raw_load(name: str, root: Path, download: bool = False):
    spec = D.get_spec(name)
    return spec.source.load(spec, root, "test", download)


# --------------------------------------------------------------------------- textures (DTD)

def test_textures_decoded_to_64_then_converted(tmp_path):
    fake_dtd(tmp_path)
    x, y, classes = raw_load("textures", tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (3, 3, 64, 64)
    assert y.tolist() == [-1, -1, -1] and classes is None
    # wide stripes: shorter side resized to 64, then the center 64x64 crop is the green third
    # (its outer 2 columns are blended with the neighbours by the antialiased resize)
    mid = x[0, :, :, 2:-2]
    assert (mid[1] > 240).all() and (mid[0] < 15).all() and (mid[2] < 15).all()
    assert (x[1] == 200).all()                               # gray -> 3 equal channels
    assert (x[2].float().mean((1, 2)) - torch.tensor([10.0, 20.0, 30.0])).abs().max() < 4   # the JPEG

    d = D.load_dataset("dtd", "test", data_root=tmp_path, image_shape=(3, 32, 32))
    assert d.name == "textures" and d.x.shape == (3, 3, 32, 32) and d.x.dtype == torch.float32
    assert d.x.min() >= -1 and d.x.max() <= 1 and (d.y == -1).all() and d.num_classes is None
    assert d.x[0, 1, :, 2:-2].min() > 0.85 and d.x[0, 0, :, 2:-2].max() < -0.85
    with pytest.raises(ValueError, match="test"):
        D.load_dataset("textures", "train", data_root=tmp_path)


def test_textures_cache_is_reused_and_refreshed(tmp_path, monkeypatch):
    rel = fake_dtd(tmp_path)
    first, _, _ = raw_load("textures", tmp_path)
    cache = tmp_path / "dtd" / "test1-64px.pt"
    assert cache.is_file()
    assert torch.equal(torch.load(cache, weights_only=True)["x"], first)

    def no_decoding(paths):
        raise AssertionError("decoded again although the cache is valid")

    real = web_sets.decode_images
    monkeypatch.setattr(web_sets, "decode_images", no_decoding)
    again, _, _ = raw_load("textures", tmp_path)
    assert torch.equal(again, first)

    # another file list (one more image in test1.txt): the cache is stale and rebuilt
    calls: list = []
    monkeypatch.setattr(web_sets, "decode_images", lambda paths: calls.append(paths) or real(paths))
    labels = tmp_path / "dtd" / "dtd" / "labels" / "test1.txt"
    labels.write_text(labels.read_text() + "woven/woven_0009.jpg\n")
    more, _, _ = raw_load("textures", tmp_path)
    assert more.shape == (len(rel) + 1, 3, 64, 64) and len(calls) == len(rel) + 1
    assert torch.equal(more[:len(rel)], first)


def test_read_only_root_caches_under_default_root(tmp_path):
    root = tmp_path / "shared"
    fake_dtd(root)
    dirs = [root, *[q for q in root.rglob("*") if q.is_dir()]]
    for d in dirs:
        d.chmod(0o555)
    try:
        x, _, _ = raw_load("textures", root)
        assert x.shape == (3, 3, 64, 64)
        assert not (root / "dtd" / "test1-64px.pt").exists()
        assert len(list((tmp_path / "default-root" / "decoded-cache").glob("test1-64px-*.pt"))) == 1
    finally:
        for d in dirs:
            d.chmod(0o755)


# --------------------------------------------------------------------------- places365

def test_places_subset_is_fixed_and_at_most_10000():
    assert web_sets.PLACES_KEEP == 10_000 and D.get_spec("places365").source.keep == 10_000
    kept = web_sets.keep_subset(36_500, 10_000)
    assert len(kept) == 10_000 == len(set(kept)) and kept == sorted(kept)
    assert 0 <= kept[0] and kept[-1] < 36_500
    assert kept == web_sets.keep_subset(36_500, 10_000)          # deterministic
    assert kept != list(range(10_000))                           # spread over the set, not the first ones
    assert web_sets.keep_subset(37, 10_000) == list(range(37))   # small sets are kept whole
    assert "10,000" in D.get_spec("places365").description


def test_places_decoded_subset(tmp_path, monkeypatch):
    fake_places(tmp_path, n=12)
    monkeypatch.setattr(D.get_spec("places365").source, "keep", 5)
    x, y, classes = raw_load("places365", tmp_path)
    assert x.dtype == torch.uint8 and x.shape == (5, 3, 64, 64) and (y == -1).all() and classes is None
    got = [round(v / 20) for v in x[:, 0].float().mean((1, 2)).tolist()]
    assert got == web_sets.keep_subset(12, 5) and len(set(got)) == 5
    assert (tmp_path / "places365" / "val_256-64px.pt").is_file()
    x2, _, _ = raw_load("places365", tmp_path)
    assert torch.equal(x, x2)

    d = D.load_dataset("places", "test", data_root=tmp_path, image_shape=(3, 32, 32))
    assert d.name == "places365" and d.x.shape == (5, 3, 32, 32) and d.x.dtype == torch.float32
    assert d.x.min() >= -1 and d.x.max() <= 1 and (d.y == -1).all()
    # a larger keep than the set: every image, in file order
    monkeypatch.setattr(D.get_spec("places365").source, "keep", 100)
    x_all, _, _ = raw_load("places365", tmp_path)
    assert [round(v / 20) for v in x_all[:, 0].float().mean((1, 2)).tolist()] == list(range(12))


# --------------------------------------------------------------------------- missing sets, status

@pytest.mark.parametrize("name, folder", [("textures", "dtd"), ("places365", "places365")])
def test_missing_set_is_one_line(tmp_path, offline, name, folder):
    root = tmp_path / "empty"
    st = D.dataset_status(name, root)
    assert st["present"] is False and st["source"] is None and st["looked_in"] == [str(root / folder)]
    assert "download=True" in st["how_to_get"] and st["num_classes"] is None and st["splits"] == ["test"]
    with pytest.raises(DatasetNotFoundError) as ei:
        D.load_dataset(name, "test", data_root=root, download=False)
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith(f"{name} not found under {root}")
    assert str(root / folder) in msg and "not attempted" in msg and "download=True" in msg
    assert offline == []
    with pytest.raises(DatasetNotFoundError) as ei:
        D.load_dataset(name, "test", data_root=root)                # download=True, but offline
    msg = str(ei.value)
    assert "\n" not in msg and "offline (test)" in msg and "download=True" in msg
    assert len(offline) == 1


def test_missing_set_via_cli_has_no_traceback(tmp_path):
    import click
    from click.testing import CliRunner

    from niood_plugin.cli import _handle_errors

    @click.command()
    @_handle_errors
    def load() -> None:
        D.load_dataset("textures", "test", data_root=tmp_path / "empty", download=False)

    result = CliRunner().invoke(load, [])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "textures not found" in lines[0] and "download=True" in lines[0]


def test_status_present_and_incomplete(tmp_path):
    fake_dtd(tmp_path)
    fake_places(tmp_path, n=2)
    for name, folder in (("textures", "dtd"), ("dtd", "dtd"), ("places365", "places365")):
        st = D.dataset_status(name, tmp_path)
        assert st["present"] is True and st["source"] == str(tmp_path / folder), st
        assert st["shape"] == (3, 64, 64) and st["num_classes"] is None
    (tmp_path / "dtd" / "dtd" / "labels" / "test1.txt").unlink()
    (tmp_path / "places365" / "places365_val.txt").unlink()
    assert D.dataset_status("textures", tmp_path)["present"] is False
    assert D.dataset_status("places365", tmp_path)["present"] is False
    with pytest.raises(DatasetNotFoundError, match="^places365 not found"):
        D.load_dataset("places365", "test", data_root=tmp_path, download=False)
