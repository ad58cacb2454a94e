"""The airbench94-shaped backbone ``airnet``: protocol, patch whitening, widths, registration."""
from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from niood_plugin.bench.config import BenchConfig
from niood_plugin.bench.defaults import DEFAULT_WIDTH, WIDTH_ARGUMENT
from niood_plugin.errors import InvalidArgumentError, InvalidTypeError
from niood_plugin.models import (AirNet, build_classifier, check_feature_classifier, head_linear, init_whitening,
                                 last_linear, to_channels_last)
from niood_plugin.models.airnet import LOGIT_SCALE, ShiftBatchNorm

SMALL = (8, 16, 16)


def _images(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Spatially and across channels correlated images in [-1, 1] (unlike white noise)."""
    g = torch.Generator().manual_seed(seed)
    x = F.avg_pool2d(torch.randn(n, 3, 34, 34, generator=g), 3, stride=1)          # neighbours correlate
    mix = torch.tensor([[1.0, 0.6, 0.3], [0.2, 1.0, 0.5], [0.4, 0.1, 1.0]])
    x = torch.einsum("dc,nchw->ndhw", mix, x) + torch.tensor([0.3, -0.2, 0.1]).view(1, 3, 1, 1)
    return torch.tanh(x)


def _patch_stats(model: AirNet, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the whitening layer's first 4C channels over all positions."""
    with torch.no_grad():
        out = model.whiten(x).double()
    d = out.shape[1] // 2
    rows = out[:, :d].permute(0, 2, 3, 1).reshape(-1, d)
    mean = rows.mean(0)
    centred = rows - mean
    return mean, centred.T @ centred / rows.shape[0]


@pytest.mark.parametrize("outputs", [10, 11])
def test_protocol_shapes_for_k_and_k_plus_1(outputs):
    torch.manual_seed(0)
    model = AirNet(outputs, widths=SMALL)
    check_feature_classifier(model)
    x = _images(4)
    f = model.features(x)
    assert f.shape == (4, SMALL[2]) and model.head(f).shape == (4, outputs)
    assert torch.allclose(model(x), model.head(f))
    w, b = last_linear(model)                    # ViM's (W, b) reproduce the logits exactly
    assert head_linear(model) is model.classifier and model.classifier.bias is None
    assert torch.allclose(f @ w.T + b, model(x), atol=1e-6)


def test_logits_are_scaled_by_logit_scale():
    torch.manual_seed(0)
    a = AirNet(10, widths=SMALL)
    b = AirNet(10, widths=SMALL, logit_scale=1.0)
    b.load_state_dict(a.state_dict())
    x = _images(3)
    assert LOGIT_SCALE == pytest.approx(1 / 9)
    assert torch.allclose(a(x), b(x) * LOGIT_SCALE, atol=1e-6)


def test_whitening_gives_identity_patch_covariance():
    x = _images(64)
    model = AirNet(10, widths=SMALL)
    mean, cov = _patch_stats(model, x)
    assert (cov - torch.eye(12, dtype=cov.dtype)).abs().max() > 0.1        # not white before
    init_whitening(model, x, eps=1e-9)
    assert bool(model.whiten.fitted)
    mean, cov = _patch_stats(model, x)
    assert torch.allclose(cov, torch.eye(12, dtype=cov.dtype), atol=2e-3)
    assert mean.abs().max() < 1e-3                                          # the bias centres the outputs
    out = model.whiten(x)
    assert torch.allclose(out[:, 12:], -out[:, :12], atol=1e-5)             # negated copies
    # with the default eps: diag(lambda / (lambda + eps)), lambda the patch covariance's eigenvalues
    patches = F.unfold(x.double(), 2).transpose(1, 2).reshape(-1, 12)
    lam = torch.linalg.eigvalsh(torch.cov(patches.T, correction=0)).flip(0)
    init_whitening(model, x)
    _, cov = _patch_stats(model, x)
    assert torch.allclose(cov, torch.diag(lam / (lam + 5e-4)), atol=2e-3)


def test_whitening_from_uint8_matches_float():
    u8 = ((_images(16) + 1) * 127.5).round().to(torch.uint8)
    a, b = AirNet(10, widths=SMALL), AirNet(10, widths=SMALL)
    init_whitening(a, u8)
    init_whitening(b, u8.float() / 127.5 - 1)
    assert torch.allclose(a.whiten.weight, b.whiten.weight, atol=1e-5)


def test_default_whitening_passes_patches_through():
    model = AirNet(10, widths=SMALL)
    x = _images(2)
    patches = F.unfold(x, 2).reshape(2, 12, 31, 31)
    out = model.whiten(x)
    assert not bool(model.whiten.fitted)
    assert torch.allclose(out[:, :12], patches, atol=1e-6) and torch.allclose(out[:, 12:], -patches, atol=1e-6)


def test_init_whitening_rejects_bad_input():
    model = AirNet(10, widths=SMALL)
    with pytest.raises(InvalidArgumentError, match="permute"):
        init_whitening(model, torch.zeros(4, 32, 32, 3, dtype=torch.uint8))
    with pytest.raises(InvalidArgumentError, match=r"\[-1, 1\]"):
        init_whitening(model, torch.rand(4, 3, 32, 32) * 255)
    with pytest.raises(InvalidTypeError, match="PatchWhitening"):
        init_whitening(torch.nn.Linear(3, 3), _images(2))
    with pytest.raises(ValueError, match="eps"):
        init_whitening(model, _images(2), eps=0.0)


def test_widths_argument_and_harness_mapping():
    m = build_classifier("airnet", 11, 3, **{WIDTH_ARGUMENT["airnet"]: 32})
    convs = [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]
    assert m.widths == (32, 128, 128) and [c.out_channels for c in convs] == [32, 32, 128, 128, 128, 128]
    assert convs[0].in_channels == 24 and m.features(_images(2)).shape == (2, 128)
    assert AirNet(10).widths == (64, 256, 256) and AirNet(10, widths=(4, 8, 12)).widths == (4, 8, 12)
    assert BenchConfig(id="cifar10", classifier="airnet").resolved().width == DEFAULT_WIDTH["airnet"] == 64
    gray = build_classifier("airnet", 10, 1, width=4)
    assert gray(torch.zeros(2, 1, 28, 28)).shape == (2, 10) and gray.whiten.weight.shape == (8, 1, 2, 2)
    with pytest.raises(InvalidArgumentError, match="not both"):
        AirNet(10, width=8, widths=SMALL)
    with pytest.raises(ValueError, match="widths"):
        AirNet(10, widths=(8, 16))


def test_frozen_weights_get_no_gradient():
    torch.manual_seed(0)
    model = AirNet(10, widths=SMALL)
    init_whitening(model, _images(16))
    before = model.whiten.weight.clone()
    names = {n for n, _ in model.named_parameters()}
    assert "whiten.weight" not in names and "whiten.bias" in names
    opt = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(_images(8)), torch.arange(8)).backward()
        opt.step()
    assert torch.equal(model.whiten.weight, before)
    bns = [m for m in model.modules() if isinstance(m, ShiftBatchNorm)]
    assert len(bns) == 6 and all(not bn.weight.requires_grad and (bn.weight == 1).all() for bn in bns)
    assert all(bn.bias.grad is not None for bn in bns)


def test_state_dict_round_trip_keeps_whitening():
    torch.manual_seed(0)
    model = AirNet(10, widths=SMALL)
    init_whitening(model, _images(16))
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = AirNet(10, widths=SMALL)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert bool(fresh.whiten.fitted) and torch.equal(fresh.whiten.weight, model.whiten.weight)
    x = _images(3)
    assert torch.equal(fresh.eval()(x), model.eval()(x))


def test_channels_last_and_autocast_keep_batchnorm_fp32():
    torch.manual_seed(0)
    model = to_channels_last(AirNet(10, widths=SMALL))
    init_whitening(model, _images(16))
    x = _images(4).contiguous(memory_format=torch.channels_last)
    seen = []
    bn = next(m for m in model.modules() if isinstance(m, ShiftBatchNorm))
    bn.register_forward_hook(lambda m, i, o: seen.append((i[0].dtype, o.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert seen == [(torch.bfloat16, torch.bfloat16)] and bn.running_mean.dtype == torch.float32
    y = torch.randn(4, 8, 5, 5)
    ref = ShiftBatchNorm(8)
    assert torch.allclose(ref(y.bfloat16()).float(), ShiftBatchNorm(8)(y), atol=0.05)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_autocast():
    model = to_channels_last(AirNet(11, widths=SMALL)).cuda()
    init_whitening(model, _images(16).cuda())
    x = _images(8).cuda().contiguous(memory_format=torch.channels_last)
    for dtype in (torch.float16, torch.bfloat16):
        with torch.autocast("cuda", dtype=dtype):
            out = model(x)
            F.cross_entropy(out.float(), torch.arange(8, device="cuda")).backward()
        assert out.dtype == dtype and torch.isfinite(out.float()).all()
    assert model.whiten.weight.grad is None and model.groups[0][0].weight.grad is not None
