import pytest
import torch

from niood_plugin.conditioning import label_matrix, sample_conditioning
from niood_plugin.models import (CONDITIONINGS, DropOutput, build_classifier, build_generator,
                                 check_feature_classifier,
                                 last_linear)


@pytest.mark.parametrize("kind", CONDITIONINGS)
def test_conditioning_shapes_and_labels(kind):
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 3, 10, 5])
    c = sample_conditioning(kind, 4, 11, labels=labels, generator=g)
    assert c.labels.tolist() == labels.tolist()
    assert c.target.shape == (4, 11)
    assert torch.allclose(c.target.sum(1), torch.ones(4))
    assert c.target.argmax(1).tolist() == labels.tolist()
    if kind in ("vector", "vector-matrix"):
        assert c.vector.shape == (4, 11) and c.vector.argmax(1).tolist() == labels.tolist()
    else:
        assert c.vector is None
    if kind in ("matrix", "vector-matrix"):
        assert c.matrix.shape == (4, 1, 11, 11)
    else:
        assert c.matrix is None
    random = sample_conditioning(kind, 1000, 11, generator=g)
    assert set(random.labels.tolist()) == set(range(11))


def test_label_matrix_is_a_cross():
    m = label_matrix(torch.tensor([2]), 4)[0, 0]
    expected = torch.zeros(4, 4)
    expected[2, :] = 1
    expected[:, 2] = 1
    assert torch.equal(m, expected)


def test_unknown_conditioning():
    with pytest.raises(ValueError, match="conditioning"):
        sample_conditioning("scalar", 2, 3)


@pytest.mark.parametrize("name, shape, feat", [("report28", (1, 28, 28), 2 * 8), ("report32", (3, 32, 32), 4 * 8)])
def test_report_classifier_shapes(name, shape, feat):
    clf = build_classifier(name, num_outputs=11, in_channels=shape[0], ncf=8).eval()
    x = torch.randn(3, *shape)
    f = clf.features(x)
    assert f.shape == (3, feat)
    assert clf(x).shape == (3, 11)
    assert torch.allclose(clf.head(f), clf(x))
    check_feature_classifier(clf)


@pytest.mark.parametrize("name, shape", [("report28", (1, 28, 28)), ("report32", (3, 32, 32))])
@pytest.mark.parametrize("kind", CONDITIONINGS)
def test_report_generator_shapes(name, shape, kind):
    gen = build_generator(name, num_outputs=11, nz=16, out_channels=shape[0], conditioning=kind, ngf=8)
    assert gen.num_outputs == 11
    assert gen.embed is None or gen.embed.in_features == 11  # conditioned on the K + 1 outputs
    c = sample_conditioning(kind, 5, 11)
    out = gen(torch.randn(5, 16), c.vector, c.matrix)
    assert out.shape == (5, *shape)
    # the condition changes the output (the generator is really conditioned)
    c2 = sample_conditioning(kind, 5, 11, labels=(c.labels + 1) % 11)
    gen.eval()
    z = torch.randn(5, 16)
    assert not torch.allclose(gen(z, c.vector, c.matrix), gen(z, c2.vector, c2.matrix))


def test_timm_classifier_follows_protocol():
    clf = build_classifier("test_resnet", num_outputs=11, in_channels=1).eval()
    x = torch.randn(2, 1, 28, 28)
    assert clf(x).shape == (2, 11)
    assert torch.allclose(clf.head(clf.features(x)), clf(x), atol=1e-5)
    w, b = last_linear(clf)
    assert w.shape[0] == 11 and b.shape == (11,)


def test_unknown_names_and_protocol_errors():
    with pytest.raises(ValueError, match="unknown classifier"):
        build_classifier("no-such-net", 3, 1)
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("no-such-gen", 3)
    with pytest.raises(TypeError, match="features"):
        check_feature_classifier(torch.nn.Linear(3, 3))


def test_drop_output_restricts_to_k_logits():
    lin = torch.nn.Linear(4, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.arange(12.0).view(3, 4))
        lin.bias.copy_(torch.tensor([0.0, 1.0, 2.0]))

    class Hand(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = lin

        def features(self, x):
            return x

        def head(self, f):
            return self.classifier(f)

        def forward(self, x):
            return self.head(self.features(x))

    m = DropOutput(Hand(), index=-1)
    x = torch.ones(1, 4)
    full = Hand()(x)
    assert m(x).tolist() == full[:, :2].tolist()
    assert m.head(m.features(x)).tolist() == full[:, :2].tolist()
    w, b = last_linear(m)
    assert w.shape == (2, 4) and b.tolist() == [0.0, 1.0]
    assert torch.equal(DropOutput(Hand(), index=0)(x), full[:, 1:])


def test_build_generator_takes_num_outputs_not_num_classes():
    """The conditioning's size is the classifier's K + 1 outputs, named ``num_outputs`` as in
    ``build_classifier``; ``num_classes`` (K everywhere else) is not a parameter."""
    gen = build_generator("report28", 11, nz=8, ngf=8)
    assert gen.num_outputs == 11 and gen.embed.in_features == 11
    with pytest.raises(TypeError, match="num_outputs"):
        build_generator("report28", num_classes=11, nz=8, ngf=8)
