import math

import pytest
import torch
from pytorch_ood.api import ModelNotSetException
from pytorch_ood.detector import MaxSoftmax

from niood_plugin import UEDetector
from niood_plugin.scores import softmax_metrics, ue_from_probs


def ue_by_definition(p):
    """The report's literal 1 - a/b, computed the long way."""
    k = p.shape[1]
    u = torch.full_like(p, 1.0 / k)
    onehot = torch.nn.functional.one_hot(p.argmax(1), k).float()
    a = ((p - u) ** 2).sum(1)
    b = ((onehot - u) ** 2).sum(1)
    return 1 - a / b


def test_uniform_is_one_and_onehot_is_zero():
    assert UEDetector.score(torch.zeros(3, 10)).tolist() == pytest.approx([1.0] * 3)
    near_onehot = torch.tensor([[100.0, 0, 0, 0]])
    assert UEDetector.score(near_onehot).item() == pytest.approx(0.0, abs=1e-6)


def test_mid_case_by_hand():
    # p = (0.5, 0.25, 0.25), K = 3: a = 1/36 + 2/144 = 1/24, b = 4/9 + 2/9 = 2/3, UE = 1 - 1/16
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert UEDetector.score(logits).item() == pytest.approx(1 - 1 / 16, abs=1e-6)


def test_closed_form_equals_definition_and_range():
    torch.manual_seed(0)
    logits = torch.randn(500, 7) * 4
    p = torch.softmax(logits, 1)
    ue = UEDetector.score(logits)
    assert torch.allclose(ue, ue_by_definition(p), atol=1e-5)
    k = 7
    assert torch.allclose(ue, k * (1 - (p * p).sum(1)) / (k - 1), atol=1e-6)


def test_garbage_assigned_input_scores_above_confident_id():
    confident_id = torch.tensor([[12.0, 0, 0, 0, 0]])
    to_garbage = torch.tensor([[0.0, 0, 0, 0, 12.0]])
    for variant in ("combined", "garbage"):
        s_id = UEDetector.score(confident_id, garbage_index=4, variant=variant)
        s_g = UEDetector.score(to_garbage, garbage_index=4, variant=variant)
        assert s_g.item() > 0.99 and s_id.item() < 0.01, variant
    # the report's "garbage excluded" variant ignores the garbage logit entirely
    ue_id = UEDetector.score(torch.tensor([[12.0, 0, 0, 0, -3.0]]), garbage_index=4, variant="id")
    assert ue_id.item() == pytest.approx(UEDetector.score(torch.tensor([[12.0, 0, 0, 0]])).item(), abs=1e-6)
    # "full" treats a confident garbage prediction as certain: it looks in-distribution
    assert UEDetector.score(to_garbage, garbage_index=4, variant="full").item() < 0.01


def test_combined_formula():
    logits = torch.tensor([[2.0, 1.0, 0.0, 0.5]])
    p = torch.softmax(logits, 1)[0]
    ue_id = ue_from_probs(torch.softmax(logits[:, :3], 1))[0]
    expected = 1 - (1 - p[3]) * (1 - ue_id)
    assert UEDetector.score(logits, 3, "combined").item() == pytest.approx(float(expected), abs=1e-6)


def test_default_variant_is_the_garbage_probability_for_a_garbage_model():
    logits = torch.tensor([[2.0, 1.0, 0.0, 0.5]])
    assert UEDetector(None, garbage_index=3).variant == "garbage"
    assert UEDetector.score(logits, 3).item() == pytest.approx(float(torch.softmax(logits, 1)[0, 3]), abs=1e-6)
    assert UEDetector(None).variant == "combined"  # no garbage class: plain UE


@pytest.mark.parametrize("bad, exc", [
    (torch.zeros(5), ValueError),                       # 1-D
    (torch.zeros(0, 4), ValueError),                    # empty
    (torch.tensor([[0.0, float("nan")]]), ValueError),  # NaN
    (torch.tensor([[0.0, float("inf")]]), ValueError),  # Inf
    (torch.zeros(2, 4, dtype=torch.long), TypeError),   # integer dtype
])
def test_bad_logits(bad, exc):
    with pytest.raises(exc):
        UEDetector.score(bad)


def test_bad_arguments():
    with pytest.raises(ValueError, match="out of range"):
        UEDetector.score(torch.zeros(2, 4), garbage_index=4)
    with pytest.raises(ValueError, match="variant"):
        UEDetector(None, variant="nope")
    with pytest.raises(ValueError, match="garbage_index"):
        UEDetector(None, variant="id")
    with pytest.raises(TypeError, match="garbage_index must be an int"):
        UEDetector(None, garbage_index=True)  # a bool is not index 1
    with pytest.raises(TypeError, match="garbage_index must be an int"):
        UEDetector.score(torch.zeros(2, 4), garbage_index=True)
    with pytest.raises(ModelNotSetException):
        UEDetector(None).predict(torch.zeros(2, 1, 4, 4))
    model = torch.nn.Flatten()
    with pytest.raises(TypeError):
        UEDetector(model).predict(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError):
        UEDetector(model).predict(torch.full((2, 4), float("nan")))


def test_fit_returns_self_and_behaves_like_maxsoftmax():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    x = torch.randn(8, 1, 4, 4)
    det = UEDetector(model)
    assert det.fit(None) is det
    assert det.predict(x).shape == MaxSoftmax(model).predict(x).shape == (8,)
    assert torch.allclose(det(x), det.predict_logits(model(x)))


def test_softmax_metrics_by_hand():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]]))
    m = softmax_metrics(logits)
    assert m["confidence"].item() == pytest.approx(0.5)
    assert m["margin"].item() == pytest.approx(0.2)
    assert m["entropy"].item() == pytest.approx(-(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)))


@pytest.mark.parametrize("index", [-1, -3])
def test_negative_garbage_index_is_refused(index):
    """On a K-way model -1 is its last class: scoring it as "garbage" would be silently wrong."""
    with pytest.raises(ValueError, match="garbage_index must be >= 0"):
        UEDetector(None, garbage_index=index)
    for variant in ("garbage", "combined", "id", "full"):
        with pytest.raises(ValueError, match="garbage_index must be >= 0"):
            UEDetector.score(torch.zeros(2, 4), garbage_index=index, variant=variant)
    det = UEDetector(None, garbage_index=3)
    det.garbage_index = index  # set after construction: refused when scoring
    with pytest.raises(ValueError, match="garbage_index must be >= 0"):
        det.predict_logits(torch.zeros(2, 4))


def test_garbage_index_errors_are_the_librarys_own():
    from niood_plugin.errors import InvalidArgumentError, InvalidTypeError

    with pytest.raises(InvalidArgumentError):
        UEDetector(None, garbage_index=-1)
    with pytest.raises(InvalidTypeError):
        UEDetector(None, garbage_index=2.0)
