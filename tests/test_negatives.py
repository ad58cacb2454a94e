import pytest
import torch

from niood_plugin.negatives import (check_jigsaw_grid, check_negatives, cutmix, jigsaw, make_negatives, parse_kinds,
                                    rotate, warp)


def _tiles(img, grid):
    c, h, w = img.shape
    th, tw = h // grid, w // grid
    return [img[:, i * th:(i + 1) * th, j * tw:(j + 1) * tw] for i in range(grid) for j in range(grid)]


@pytest.mark.parametrize("shape,grid", [((3, 1, 28, 28), 4), ((2, 3, 32, 32), 2), ((2, 1, 28, 28), 7)])
def test_jigsaw_is_a_permutation_of_whole_tiles(shape, grid):
    x = torch.randn(shape)
    out = jigsaw(x, grid, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for b in range(shape[0]):
        src, dst = _tiles(x[b], grid), _tiles(out[b], grid)
        # every output tile is exactly one input tile, each input tile is used once
        match = [[torch.equal(d, s) for s in src] for d in dst]
        assert all(sum(row) == 1 for row in match)
        assert sorted(row.index(True) for row in match) == list(range(grid * grid))
    assert not torch.equal(out, x)


def test_jigsaw_images_get_their_own_order_and_repeat_with_the_generator():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(64, 1, 1, 1)
    a = jigsaw(x, 2, torch.Generator().manual_seed(1))
    b = jigsaw(x, 2, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert len({tuple(img.flatten().tolist()) for img in a}) > 10  # 24 orders possible


def test_bad_grid():
    with pytest.raises(ValueError, match="does not divide the image size 28x28"):
        check_jigsaw_grid(5, (1, 28, 28))
    with pytest.raises(ValueError, match="int >= 2"):
        check_jigsaw_grid(1, (1, 28, 28))
    with pytest.raises(ValueError, match="does not divide"):
        jigsaw(torch.zeros(2, 1, 30, 30), 4)


def test_rotate_turns_each_image_a_quarter_either_way_and_repeats_with_the_generator():
    x = torch.randn(64, 2, 6, 6)
    out = rotate(x, torch.Generator().manual_seed(0))
    left, right = x.rot90(1, dims=(2, 3)), x.rot90(-1, dims=(2, 3))
    is_left = torch.tensor([torch.equal(o, l) for o, l in zip(out, left)])
    is_right = torch.tensor([torch.equal(o, r) for o, r in zip(out, right)])
    assert (is_left ^ is_right).all()  # every image is turned, one way
    assert 10 < int(is_left.sum()) < 54  # both ways occur
    assert torch.equal(out, rotate(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, rotate(x, torch.Generator().manual_seed(1)))


def test_make_negatives_splits_the_images_between_kinds_in_order():
    x = torch.randn(5, 1, 8, 8)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(make_negatives(x, ("jigsaw",), 4, g()), jigsaw(x, 4, g()))  # one kind: exactly jigsaw
    both = make_negatives(x, ("jigsaw", "rotate"), 4, g())
    gen = g()
    assert torch.equal(both, torch.cat([jigsaw(x[:3], 4, gen), rotate(x[3:], gen)]))
    assert make_negatives(x[:1], ("jigsaw", "rotate"), 4, g()).shape == (1, 1, 8, 8)
    gen = g()
    assert torch.equal(make_negatives(x, ("warp", "cutmix"), 4, g()), torch.cat([warp(x[:3], gen), cutmix(x[3:], gen)]))


def test_negative_kinds_are_checked():
    assert parse_kinds("jigsaw+rotate") == ("jigsaw", "rotate")
    for bad in ("", "flip", "jigsaw+jigsaw", "jigsaw,rotate", None):
        with pytest.raises(ValueError, match="negatives must be one of"):
            parse_kinds(bad)
    check_negatives(("rotate",), 5, (1, 8, 8))  # the grid only matters for jigsaw
    with pytest.raises(ValueError, match="need square images"):
        check_negatives(("rotate",), 4, (1, 8, 12))
    with pytest.raises(ValueError, match="does not divide"):
        check_negatives(("jigsaw", "rotate"), 5, (1, 8, 8))


def test_warp_bends_each_image_its_own_way_and_keeps_the_background():
    x = torch.full((3, 1, 12, 16), -1.0)  # background at the normalised black
    x[:, :, 4:8, 2:14] = 1.0  # a bar
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    out = warp(x, g())
    assert out.shape == x.shape and torch.equal(out, warp(x, g()))  # repeatable from the generator
    assert not torch.allclose(out, x, atol=0.1)  # moved
    assert not torch.allclose(out[0], out[1], atol=0.1)  # a field per image
    assert out.min() >= -1.0 - 1e-6 and out.max() <= 1.0 + 1e-6  # bilinear: no new intensities
    flat = torch.full((2, 1, 12, 16), -1.0)
    assert torch.allclose(warp(flat, g()), flat)  # border padding: no grey creeps in from outside
    assert torch.allclose(warp(x, g(), strength=0.0), x, atol=1e-5)  # no displacement: the image itself
    # a stronger field moves more; finer cells give the same image another shape
    moved = lambda **kw: (warp(x, g(), **kw) - x).abs().mean()  # noqa: E731
    assert moved(strength=0.1) < moved(strength=0.5) < moved(strength=1.0)
    assert not torch.allclose(warp(x, g(), cells=8), out, atol=0.1)
    with pytest.raises(ValueError, match="warp_cells"):
        warp(x, g(), cells=1)
    assert parse_kinds("jigsaw+warp") == ("jigsaw", "warp")
    check_negatives(("warp",), 5, (1, 8, 12))  # any size
    sq = torch.randn(3, 1, 8, 8)
    gen = g()
    assert torch.equal(make_negatives(sq, ("rotate", "warp"), 4, g()), torch.cat([rotate(sq[:2], gen), warp(sq[2:], gen)]))
    gen = g()
    assert torch.equal(make_negatives(sq, ("warp",), 4, g(), warp_cells=3, warp_strength=0.2),
                       warp(sq, gen, cells=3, strength=0.2))


def test_cutmix_pastes_one_square_of_the_next_image_and_repeats_with_the_generator():
    x = torch.arange(4.0)[:, None, None, None].expand(4, 3, 10, 12).clone()  # image i is all i
    out = cutmix(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    for i in range(4):
        pasted = out[i] == (i + 1) % 4
        assert torch.equal(pasted | (out[i] == i), torch.ones_like(pasted))  # only the two images' pixels
        assert torch.equal(pasted[0], pasted[1]) and torch.equal(pasted[0], pasted[2])  # every channel alike
        rows, cols = pasted[0].any(1).nonzero().flatten(), pasted[0].any(0).nonzero().flatten()
        side = len(rows)
        assert len(cols) == side and int(pasted[0].sum()) == side * side  # one whole square
        assert 5 <= side <= 9  # sqrt(1/4 .. 3/4) of the shorter side (10), rounded
        assert torch.equal(rows, torch.arange(rows[0], rows[0] + side))
    assert torch.equal(out, cutmix(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(out, cutmix(x, torch.Generator().manual_seed(1)))
    assert torch.equal(cutmix(x[:1], torch.Generator().manual_seed(0)), x[:1])  # no partner: unchanged
    assert parse_kinds("warp+cutmix") == ("warp", "cutmix")
