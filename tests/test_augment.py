"""CropFlip, the augmentation registry, BatchLoader and TensorData.loader (small tensors only)."""
import pytest
import torch
import torch.nn.functional as F

from niood_plugin.checkpoint import loader_generator
from niood_plugin.data import TensorData
from niood_plugin.data.augment import BatchLoader, CropFlip, build_augmentation, list_augmentations


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _matches(img, out, p, flip_allowed=True):
    """The (dy, dx, flip) with |dy|, |dx| <= p for which ``img`` [C, H, W], reflect-padded by
    ``p`` (``F.pad(mode="reflect")``), cropped at ``[p + dy : p + dy + H, p + dx : p + dx + W]``
    and mirrored if ``flip``, equals ``out`` exactly."""
    c, h, w = img.shape
    padded = F.pad(img[None].double(), (p, p, p, p), mode="reflect")[0]
    crops = padded.unfold(1, h, 1).unfold(2, w, 1)           # [C, 2p+1, 2p+1, H, W]: crops[:, p+dy, p+dx]
    found = []
    for f in ((False, True) if flip_allowed else (False,)):
        target = (out.flip(-1) if f else out).double()[:, None, None]
        hit = (crops == target).flatten(3).all(3).all(0)      # [2p+1, 2p+1]
        found += [(int(i) - p, int(j) - p, f) for i, j in hit.nonzero()]
    return found


# ----------------------------------------------------------------------------- CropFlip

@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cropflip_keeps_shape_and_dtype(dtype):
    x = torch.randint(0, 256, (5, 3, 12, 10)).to(dtype)
    out = CropFlip()(x, _gen())
    assert out.shape == x.shape and out.dtype == dtype


def test_cropflip_pad0_noflip_is_identity():
    x = torch.rand(6, 3, 8, 8)
    assert torch.equal(CropFlip(pad=0, flip=False)(x, _gen()), x)


@pytest.mark.parametrize("shape,pad,dtype", [((16, 3, 6, 9), 5, torch.float32),   # non-square, pad = min - 1
                                             ((24, 1, 8, 8), 2, torch.uint8),
                                             ((16, 3, 4, 4), 3, torch.float32)])
def test_cropflip_matches_reflect_pad_reference(shape, pad, dtype):
    x = torch.rand(shape) if dtype.is_floating_point else torch.randint(0, 256, shape, dtype=dtype)
    if dtype.is_floating_point:
        x = x * 2 - 1
    out = CropFlip(pad=pad)(x, _gen(1))
    seen = set()
    for i in range(len(x)):
        found = _matches(x[i], out[i], pad)
        assert found, f"image {i} is not a reflect-padded shift (|d| <= {pad}) of its input, flipped or not"
        seen.update(found)
    assert {f for _, _, f in seen} == {False, True}  # both flipped and unflipped images occur


def test_cropflip_without_flip_never_mirrors():
    x = torch.rand(20, 2, 7, 7)
    out = CropFlip(pad=2, flip=False)(x, _gen(4))
    for i in range(len(x)):
        assert _matches(x[i], out[i], 2, flip_allowed=False)


def test_flip_only_registry_entry_mirrors_some_images():
    x = torch.rand(64, 1, 5, 5)
    aug = build_augmentation("flip")
    assert isinstance(aug, CropFlip) and aug.pad == 0 and aug.flip
    out = aug(x, _gen(2))
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    mirrored = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 10 < sum(mirrored) < 54


def test_cropflip_draws_per_image():
    img = torch.randperm(3 * 10 * 10).float().view(1, 3, 10, 10)  # all pixels distinct
    out = CropFlip(pad=4)(img.expand(256, -1, -1, -1).contiguous(), _gen(0))
    distinct = {tuple(o.flatten().tolist()) for o in out}
    # 162 possible (dy, dx, flip); one crop for the whole batch would give 1
    assert len(distinct) > 60


def test_cropflip_seeded():
    x = torch.rand(32, 3, 8, 8)
    aug = CropFlip(pad=3)
    a, b, c = aug(x, _gen(7)), aug(x, _gen(7)), aug(x, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("pad,h,w", [(8, 8, 8), (4, 4, 9), (5, 9, 5)])
def test_cropflip_pad_too_large(pad, h, w):
    with pytest.raises(ValueError, match="pad"):
        CropFlip(pad=pad)(torch.rand(2, 1, h, w), _gen())


@pytest.mark.parametrize("kwargs", [{"pad": -1}, {"pad": 1.5}, {"flip": "yes"}, {"pad": True}])
def test_cropflip_bad_params(kwargs):
    with pytest.raises((ValueError, TypeError)):
        CropFlip(**kwargs)


def test_cropflip_needs_a_batch():
    with pytest.raises(ValueError, match="N, C, H, W"):
        CropFlip()(torch.rand(3, 8, 8), _gen())


def test_registry():
    assert build_augmentation(None) is None and build_augmentation("none") is None
    assert {"none", "crop-flip", "flip"} <= set(list_augmentations())
    cf = build_augmentation("crop-flip")
    assert isinstance(cf, CropFlip) and (cf.pad, cf.flip) == (4, True)
    with pytest.raises(ValueError):
        build_augmentation("rotate-90")


# ----------------------------------------------------------------------------- BatchLoader

def _u8_data(n=10, seed=0):
    g = _gen(seed)
    x_u8 = torch.randint(0, 256, (n, 3, 4, 5), generator=g, dtype=torch.uint8)
    return x_u8, x_u8.to(torch.float32).div(127.5).sub(1.0), torch.arange(n)


def test_len_and_drop_last():
    _, x, y = _u8_data(10)
    for bs, drop, n_batches, sizes in [(4, False, 3, [4, 4, 2]), (4, True, 2, [4, 4]), (5, True, 2, [5, 5]),
                                       (16, False, 1, [10]), (16, True, 0, [])]:
        loader = BatchLoader(x, y, batch_size=bs, drop_last=drop)
        assert len(loader) == n_batches
        assert [len(b) for b, _ in loader] == sizes


@pytest.mark.parametrize("kind", ["exact8bit", "random", "uint8"])
def test_in_order_and_exact(kind):
    x_u8, x8, y = _u8_data(11)
    x = {"exact8bit": x8, "random": torch.rand(11, 3, 4, 5) * 2 - 1, "uint8": x_u8}[kind]
    loader = BatchLoader(x, y, batch_size=4)
    if kind != "random":
        assert loader._x.dtype == torch.uint8       # held as 8-bit
    else:
        assert loader._x.dtype == torch.float32     # not 8-bit: kept as it is
    xs, ys = zip(*loader)
    assert all(b.dtype == torch.float32 for b in xs)
    expected = x8 if kind == "uint8" else x
    assert torch.equal(torch.cat(xs), expected)
    assert torch.equal(torch.cat(ys), y)


def test_shuffle_matches_randperm_and_changes_per_pass():
    n, seed = 50, 123
    x = torch.rand(n, 1, 3, 3)
    loader = BatchLoader(x, torch.arange(n), batch_size=8, shuffle=True, seed=seed)
    g = _gen(seed)
    passes = []
    for _ in range(2):
        batches = list(loader)
        order = torch.cat([yb for _, yb in batches])
        assert sorted(order.tolist()) == list(range(n))                     # every index once
        assert torch.equal(torch.cat([xb for xb, _ in batches]), x[order])  # images follow their labels
        assert torch.equal(order, torch.randperm(n, generator=g))
        passes.append(order)
    assert not torch.equal(passes[0], passes[1])
    assert torch.equal(passes[0], torch.randperm(n, generator=_gen(seed)))


def test_generator_state_resumes_the_next_pass():
    x, y = torch.rand(30, 1, 2, 2), torch.arange(30)
    a = BatchLoader(x, y, batch_size=7, shuffle=True, seed=5, augment=CropFlip(pad=1))
    list(a)
    state = loader_generator(a).get_state()
    b = BatchLoader(x, y, batch_size=7, shuffle=True, seed=99, augment=CropFlip(pad=1))
    loader_generator(b).set_state(state)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(ya, yb) and torch.equal(xa, xb)


def test_channels_last():
    _, x, y = _u8_data(6)
    for xb, _ in BatchLoader(x, y, batch_size=4, channels_last=True, augment=CropFlip(pad=1)):
        assert xb.dtype == torch.float32
        assert xb.is_contiguous(memory_format=torch.channels_last) and not xb.is_contiguous()


def test_augment_is_applied_to_stored_batches():
    x_u8, x, y = _u8_data(9)
    calls = []

    def mirror(xb, generator):
        calls.append((xb.dtype, generator))
        return xb.flip(-1)

    loader = BatchLoader(x, y, batch_size=4, augment=mirror)
    out = torch.cat([xb for xb, _ in loader])
    assert torch.equal(out, x.flip(-1))
    assert len(calls) == 3
    assert all(dt == torch.uint8 and g is loader.generator for dt, g in calls)


def test_augment_must_be_callable():
    _, x, y = _u8_data(4)
    with pytest.raises(TypeError, match="augment"):
        BatchLoader(x, y, augment="crop-flip")


@pytest.mark.parametrize("xs,ys", [((5, 1, 2, 2), (4,)), ((5, 4, 4), (5,)), ((5, 1, 2, 2), (5, 1))])
def test_shape_mismatch(xs, ys):
    with pytest.raises(ValueError):
        BatchLoader(torch.rand(xs), torch.zeros(ys, dtype=torch.long))


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"shuffle": "yes"}, {"seed": -1}, {"batch_size": 2.0}])
def test_bad_loader_params(kwargs):
    _, x, y = _u8_data(4)
    with pytest.raises((ValueError, TypeError)):
        BatchLoader(x, y, **kwargs)


def test_generator_exposed_and_found():
    _, x, y = _u8_data(4)
    loader = BatchLoader(x, y, shuffle=True, seed=3)
    assert isinstance(loader.generator, torch.Generator)
    assert loader_generator(loader) is loader.generator
    assert torch.equal(loader.generator.get_state(), _gen(3).get_state())


def test_tensordata_loader_passes_arguments():
    _, x, y = _u8_data(10)
    aug = CropFlip(pad=1)
    loader = TensorData(x, y, "t").loader(batch_size=3, shuffle=True, seed=4, drop_last=True, augment=aug,
                                           channels_last=True)
    assert isinstance(loader, BatchLoader)
    assert (loader.batch_size, loader.shuffle, loader.drop_last, loader.channels_last) == (3, True, True, True)
    assert loader.augment is aug and len(loader) == 3
    plain = TensorData(x, y, "t").loader(batch_size=4)
    assert torch.equal(torch.cat([xb for xb, _ in plain]), x)
