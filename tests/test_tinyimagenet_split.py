"""The Tiny ImageNet validation / test parts (``tinyimagenet-val``, ``tinyimagenet-test``), on a
stand-in folder of tiny JPEGs laid out like the real archive (no real data)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from niood_plugin import data as D
from niood_plugin.data.catalog import TINY_SPLIT_SEED, TINY_VAL_SIZE
from niood_plugin.data.images import Part, part_indices
from niood_plugin.errors import DataFormatError
from niood_plugin.suites import CIFAR10OneVsRest, OneVsRest, suite_settings

N = TINY_VAL_SIZE + 12    # the smallest stand-in that leaves a test part worth checking
STEP = 5                  # colour step between images: JPEG keeps a flat 8x8 colour within +-2


def _write(folder: Path, n: int) -> None:
    """``test_{i}.JPEG``, a flat 8x8 colour that encodes ``i`` (red: i % 50, green: i // 50)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        rgb = ((i % 50) * STEP, (i // 50) * STEP, 128)
        Image.fromarray(np.full((8, 8, 3), rgb, dtype=np.uint8)).save(folder / f"test_{i}.JPEG", quality=90)


def _ids(d) -> list[int]:
    """The ``i`` each loaded image encodes."""
    u8 = ((d.x[:, :, 4, 4] + 1) * 127.5).round()
    return [int(round(float(r) / STEP)) + 50 * int(round(float(g) / STEP)) for r, g in u8[:, :2]]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    r = tmp_path_factory.mktemp("data")
    _write(r / "tinyimagenet" / "test" / "images", N)
    return r


def test_parts_have_fixed_sizes_and_do_not_overlap(root):
    full = D.load_dataset("tinyimagenet", "test", data_root=root)
    val = D.load_dataset("tinyimagenet-val", "test", data_root=root)
    test = D.load_dataset("tinyimagenet-test", "test", data_root=root)
    assert sorted(_ids(full)) == list(range(N))           # the stand-in is decodable image by image
    assert len(val) == TINY_VAL_SIZE == 2000 and len(test) == N - 2000
    v, t = _ids(val), _ids(test)
    assert not set(v) & set(t) and sorted(v + t) == list(range(N))
    assert v == sorted(v) and t == sorted(t)                # kept in file order
    # the validation part: the first 2,000 of a permutation seeded TINY_SPLIT_SEED of the sorted files
    assert v == part_indices(N, Part("val", TINY_VAL_SIZE, TINY_SPLIT_SEED))
    assert (val.name, test.name) == ("tinyimagenet-val", "tinyimagenet-test")
    assert val.num_classes is None and (val.y == -1).all()


def test_parts_do_not_depend_on_the_run_seed_or_limit(root):
    val, test = (set(_ids(D.load_dataset(n, "test", data_root=root))) for n in ("tinyimagenet-val",
                                                                                   "tinyimagenet-test"))
    for seed in (0, 7):
        assert set(_ids(D.load_dataset("tinyimagenet-val", "test", data_root=root, seed=seed))) == val
        small = set(_ids(D.load_dataset("tinyimagenet-val", "test", data_root=root, limit=50, seed=seed)))
        assert len(small) == 50 and small <= val           # a limit subsets within the part
        few = set(_ids(D.load_dataset("tinyimagenet-test", "test", data_root=root, limit=5, seed=seed)))
        assert len(few) == 5 and few <= test


def test_exact_duplicates_fall_in_one_part(tmp_path):
    """A file identical to one in the other part (as two Tiny ImageNet test files are) follows it."""
    import shutil

    images = tmp_path / "tinyimagenet" / "test" / "images"
    _write(images, N)
    v, t = (part_indices(N, Part(w, TINY_VAL_SIZE, TINY_SPLIT_SEED)) for w in ("val", "test"))
    shutil.copyfile(images / f"test_{v[0]}.JPEG", images / f"test_{t[0]}.JPEG")      # straddled without grouping
    val, test = (D.load_dataset(n, "test", data_root=tmp_path) for n in ("tinyimagenet-val", "tinyimagenet-test"))
    assert (len(val), len(test)) == (TINY_VAL_SIZE, N - TINY_VAL_SIZE)
    assert not set(_ids(val)) & set(_ids(test)) and _ids(val).count(v[0]) == 2


def test_too_small_folder_is_a_format_error(tmp_path):
    _write(tmp_path / "tinyimagenet" / "test" / "images", 6)
    assert len(D.load_dataset("tinyimagenet", "test", data_root=tmp_path)) == 6
    for name in ("tinyimagenet-val", "tinyimagenet-test"):
        with pytest.raises(DataFormatError, match="validation part"):
            D.load_dataset(name, "test", data_root=tmp_path)


def test_names_specs_and_cifar10_suite():
    for name, alias in (("tinyimagenet-val", "tiny-imagenet-val"), ("tinyimagenet-test", "tiny-imagenet-test")):
        spec = D.get_spec(alias)
        assert spec.name == name and spec.splits == ("test",) and spec.shape == (3, 64, 64)
        assert spec.locations("/r") == D.get_spec("tinyimagenet").locations("/r")   # the same archive
    # the CIFAR-10 suite reports the test part only; the validation part is never in it
    assert "tinyimagenet-val" not in suite_settings("cifar10")["ood"]
    assert CIFAR10OneVsRest.default_ood[0] == "tinyimagenet-test"


def test_validation_part_is_usable_as_an_ood_set(root):
    suite = OneVsRest(str(root), id="synthetic", ood=["tinyimagenet-val", "tinyimagenet-test"], test_limit=10)
    assert suite.ood_names == ["tinyimagenet-val", "tinyimagenet-test"]
    assert all(len(suite.oods[n]) == 10 and suite.oods[n].x.shape[1:] == (1, 28, 28) for n in suite.ood_names)
