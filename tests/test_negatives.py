import pytest
import torch

from niood_plugin.negatives import check_jigsaw_grid, jigsaw


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
