"""The harness's plots: per OOD set one ROC figure with each method's own detector (solid) and its
best post-hoc detector (dashed) in one colour per method; one histogram figure per method."""
import numpy as np
import pytest

from niood_plugin.bench import plots

ID = "mnist"
OODS = ("fashionmnist", "gaussian")


def _scores(shifts):
    """(method, detector) -> how far the OOD scores sit above the ID ones (larger: higher AUROC)."""
    rng = np.random.default_rng(0)
    out = {}
    for (m, d), shift in shifts.items():
        out[(m, d, ID)] = rng.normal(0, 1, 300)
        for o in OODS:
            out[(m, d, o)] = rng.normal(shift, 1, 200)
    return out


SHIFTS = {("inversion", "garbage"): 2.0, ("inversion", "ue"): 2.5, ("inversion", "msp"): 0.5,
          ("inversion", "mahalanobis"): 1.0,
          ("standard", "msp"): 0.8, ("standard", "energy"): 1.5, ("standard", "mahalanobis"): 0.3,
          ("bal", "bal"): 1.2, ("bal", "msp"): 0.7,
          ("logitnorm", "msp"): 1.8, ("logitnorm", "energy"): 0.2}


def test_each_method_gets_its_own_and_its_best_post_hoc_detector():
    chosen = plots.reader_detectors(_scores(SHIFTS), ID)
    assert list(chosen) == ["inversion", "standard", "bal", "logitnorm"]   # the run's order
    assert chosen["inversion"] == ("garbage", "mahalanobis")   # ue, garbage are not post-hoc
    assert chosen["standard"] == ("msp", "energy")
    assert chosen["bal"] == ("bal", "msp")
    assert chosen["logitnorm"] == ("msp", None)                # its own is its best post-hoc one


def test_an_own_detector_the_run_did_not_score_falls_back_to_the_best_scored():
    chosen = plots.reader_detectors(_scores({("vos", "msp"): 0.5, ("vos", "knn"): 1.5}), ID)
    assert chosen["vos"] == ("knn", None)


def test_roc_tells_methods_by_colour_and_detectors_by_line_style():
    scores = _scores(SHIFTS)
    fig = plots.roc_figure(scores, ID, "gaussian", plots.reader_detectors(scores, ID))
    curves = [ln for ln in fig.axes[0].get_lines() if ln.get_linestyle() != ":"]   # not the diagonal
    by_method = {}
    for ln in curves:
        by_method.setdefault(ln.get_label().split(":")[0], []).append(ln)
    assert {m: [ln.get_linestyle() for ln in lns] for m, lns in by_method.items()} == {
        "inversion": ["-", "--"], "standard": ["-", "--"], "bal": ["-", "--"], "logitnorm": ["-"]}
    colours = {m: {tuple(ln.get_color()) for ln in lns} for m, lns in by_method.items()}
    assert all(len(c) == 1 for c in colours.values())                   # one colour per method ...
    assert len({next(iter(c)) for c in colours.values()}) == len(colours)  # ... and no two alike
    assert len(curves) == 7
    plots.pyplot().close(fig)


def test_a_run_draws_one_roc_per_set_and_one_histogram_per_method(tmp_path):
    scores = _scores(SHIFTS)
    rocs = plots.roc_curves(tmp_path, scores, ID)
    hists = plots.histograms(tmp_path, scores, ID)
    assert sorted(p.name for p in rocs) == [f"roc_{o}.png" for o in sorted(OODS)]
    assert sorted(p.name for p in hists) == ["hist_bal_bal.png", "hist_inversion_garbage.png",
                                             "hist_logitnorm_msp.png", "hist_standard_msp.png"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(p.name for p in rocs + hists)
    assert all(p.stat().st_size > 1000 for p in rocs + hists)


@pytest.mark.parametrize("method", ["inversion", "standard"])
def test_a_single_method_run_is_drawn(tmp_path, method):
    scores = {k: v for k, v in _scores(SHIFTS).items() if k[0] == method}
    assert len(plots.roc_curves(tmp_path, scores, ID)) == len(OODS)
    assert len(plots.histograms(tmp_path, scores, ID)) == 1
