"""The detectors the harness scores a trained model with: :data:`DETECTORS`, one entry per name.

On a garbage-class model (K+1 outputs) the post-hoc detectors (MSP, ODIN, Energy,
MaxLogit, Entropy, ViM) see the K in-distribution logits only, as the report did
("garbage class excluded", :class:`~niood_plugin.models.DropOutput`).  ``ue`` uses the
garbage output as :class:`~niood_plugin.UEDetector` ``variant`` says, ``ue-id`` is the
report's garbage-excluded UE, and ``garbage`` the garbage probability alone.  Feature
detectors (Mahalanobis, KNN, ViM) are fitted on ID training features only.
Hyperparameters are pytorch-ood's defaults; none is tuned on OOD data.

Each :class:`DetectorEntry` says how to build its detector from a trained model
(:class:`BuildInputs`) and what it needs: a garbage output, fitted ID features, a peer's own
model (BAL's discriminator), the methods it applies to.  The runner asks the entries, never
the names: a run scores each method with the detectors that apply to it, refuses a detector
the user named that applies to none of the run's methods, and scores a method's own detector
(``own``) on that method's models whether named or not.  Register your own the same way:

>>> DETECTORS.register("msp-all", DetectorEntry(lambda d: MaxSoftmax(d.model), feed="full-logits",
...                                             description="MSP over every output"))
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Callable, Optional, Sequence, Union

from pytorch_ood.api import Detector
from pytorch_ood.detector import KNN, ODIN, EnergyBased, Entropy, Mahalanobis, MaxLogit, MaxSoftmax, ViM
from torch import Tensor, nn

from ..detector import UEDetector
from ..errors import ConfigError, InvalidArgumentError, InvalidTypeError
from ..models import DropOutput, last_linear
from ..registry import Registry
from ..validation import Boolean, Callable_, InstanceOf, Options, SequenceOf, validate_params
from .methods import TrainedModel

log = logging.getLogger(__name__)

#: What :func:`~niood_plugin.bench.evaluate.score` passes to a detector: all outputs of the
#: model, its K in-distribution logits, its penultimate features, or the images themselves.
FEEDS = ("full-logits", "id-logits", "features", "inputs")
#: The method a detector's ``feed`` calls.
_PREDICT = {"full-logits": "predict_logits", "id-logits": "predict_logits", "features": "predict_features",
            "inputs": "predict"}


@dataclass
class ScoringDetector:
    """A built detector and how to feed it: ``logits`` (K+1 or K), ``features`` or raw ``inputs``."""

    name: str
    detector: Detector
    feed: str            # one of FEEDS
    scored_on: str       # for the results: what the score was computed from


class BuildInputs:
    """What an entry's ``build`` gets: the trained model and what the run fitted for it."""

    def __init__(self, tm: TrainedModel, ue_variant: str, fit: Optional[tuple[Tensor, Tensor]]):
        self.tm, self.ue_variant, self.fit = tm, ue_variant, fit

    @property
    def model(self) -> nn.Module:
        """The trained model, every output (K+1 on a garbage-class model)."""
        return self.tm.model

    @property
    def garbage_index(self) -> Optional[int]:
        return self.tm.garbage_index

    @cached_property
    def post_hoc(self) -> nn.Module:
        """The model as post-hoc detectors see it: its K in-distribution outputs."""
        gi = self.garbage_index
        return DropOutput(self.tm.model, gi) if gi is not None else self.tm.model

    @property
    def id_logits_label(self) -> str:
        return "K logits (garbage excluded)" if self.garbage_index is not None else "K logits"


_NAMES = SequenceOf(InstanceOf(str), what="names")
#: The fields of :class:`DetectorEntry` and the values each may take.
ENTRY_CONSTRAINTS: dict[str, list[Any]] = {
    "build": [Callable_()], "feed": [Options(*FEEDS)], "scored_on": [InstanceOf(str, "a string"), Callable_(), None],
    "needs_garbage": [Boolean()], "needs_fit": [Boolean()], "needs_extra": [_NAMES],
    "methods": [SequenceOf(InstanceOf(str), min_length=1, what="method names"), None], "own": [Boolean()],
    "description": [InstanceOf(str, "a string")],
}


@dataclass(frozen=True)
class DetectorEntry:
    """How the harness builds one detector, and what it needs.

    :param build: ``build(inputs: BuildInputs) -> Detector`` (a pytorch-ood ``Detector``, or any
        object with the ``predict_*`` method its ``feed`` calls)
    :param feed: what the detector scores, one of :data:`FEEDS` (default the K ID logits)
    :param scored_on: what the results say it scored (a string, or ``f(inputs) -> str``);
        ``None``: said by ``feed``
    :param needs_garbage: needs a garbage output (``garbage_index``)
    :param needs_fit: fitted on ID training features (``inputs.fit``: features, labels)
    :param needs_extra: names of peer models the method keeps beside its classifier (BAL's
        ``"discriminator"``)
    :param methods: the methods it applies to (``None``: every method); required with
        ``needs_garbage``, ``needs_extra`` or ``own``, since only the method knows its model
    :param own: the own detector of ``methods``: scored on their models whether named or not
    :param description: one line for ``niood-bench list``
    """

    build: Callable[[BuildInputs], Any]
    feed: str = "id-logits"
    scored_on: Union[str, Callable[[BuildInputs], str], None] = None
    needs_garbage: bool = False
    needs_fit: bool = False
    needs_extra: Sequence[str] = ()
    methods: Optional[Sequence[str]] = None
    own: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        validate_params({k: getattr(self, k) for k in ENTRY_CONSTRAINTS}, ENTRY_CONSTRAINTS, "DetectorEntry")
        object.__setattr__(self, "needs_extra", tuple(self.needs_extra))
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(self.methods))
        elif self.needs_garbage or self.needs_extra or self.own:
            need = "its own detector" if self.own else "a garbage output" if self.needs_garbage else \
                f"the peer model(s) {', '.join(self.needs_extra)}"
            raise InvalidArgumentError(f"DetectorEntry: a detector that is {need} must name the methods whose "
                                       "models have it, e.g. methods=('inversion',)")

    def applies_to(self, method: str) -> bool:
        """Whether models of ``method`` get this detector (decided by name, before training)."""
        return self.methods is None or method in self.methods

    def missing(self, tm: TrainedModel) -> Optional[str]:
        """What the model ``tm`` lacks that this detector needs (``None``: nothing)."""
        if self.needs_garbage and tm.garbage_index is None:
            return "a garbage output"
        lacking = [k for k in self.needs_extra if k not in tm.extra]
        return f"the peer model(s) {', '.join(lacking)}" if lacking else None

    def scope(self) -> str:
        """Where it applies, for messages: ``""`` (everywhere) or ``"method bal only"``."""
        return "" if self.methods is None else f"method {' or '.join(self.methods)} only"


class DetectorRegistry(Registry[DetectorEntry]):
    """The harness's detectors: ``register(name, DetectorEntry(...))``, ``get``, ``list`` (sorted)
    and :meth:`in_order` (registration order, the order of a run's result rows)."""

    def register(self, name: str, obj: Optional[DetectorEntry] = None) -> Any:
        if obj is None:
            return lambda o: self.register(name, o)
        if not isinstance(obj, DetectorEntry):
            raise InvalidTypeError(f"detector {name!r}: register a DetectorEntry(build, ...), got "
                                   f"{type(obj).__name__}")
        return super().register(name, obj)

    def in_order(self) -> list[str]:
        return list(self._entries)


DETECTORS = DetectorRegistry("detector")


def _ue(d: BuildInputs) -> UEDetector:
    return UEDetector(d.model, d.garbage_index, d.ue_variant if d.garbage_index is not None else "combined")


def _ue_on(d: BuildInputs) -> str:
    return f"K+1 logits (UE variant '{d.ue_variant}')" if d.garbage_index is not None else "K logits"


def _vim(d: BuildInputs) -> ViM:
    z, y = d.fit
    w, b = last_linear(d.post_hoc)
    dim = max(1, min(z.shape[1] - 1, z.shape[1] // 2))
    return ViM(d.post_hoc.features, d=dim, w=w, b=b).fit_features(z, y)


def _bal(d: BuildInputs) -> Detector:
    from ..peers import BALDetector

    return BALDetector(d.model, d.tm.extra["discriminator"])


_GARBAGE = {"needs_garbage": True, "methods": ("inversion", "inversion-ft"), "feed": "full-logits"}
_FEATURES = {"needs_fit": True, "feed": "features", "scored_on": "penultimate features"}
for _name, _entry in {
    "ue": DetectorEntry(_ue, feed="full-logits", scored_on=_ue_on,
                        description="UE; on a garbage-class model the variant ue_variant names (default combined)"),
    "ue-id": DetectorEntry(lambda d: UEDetector(d.model, d.garbage_index, "id"),
                           scored_on="K logits (garbage excluded)",
                           description="the report's UE over the K ID logits, garbage output excluded", **_GARBAGE),
    "garbage": DetectorEntry(lambda d: UEDetector(d.model, d.garbage_index, "garbage"),
                             scored_on="garbage probability", description="the garbage probability", **_GARBAGE),
    "msp": DetectorEntry(lambda d: MaxSoftmax(d.post_hoc), description="maximum softmax probability"),
    "odin": DetectorEntry(lambda d: ODIN(d.post_hoc), feed="inputs",
                          scored_on=lambda d: d.id_logits_label + ", input perturbation",
                          description="ODIN: temperature scaling and input perturbation"),
    "energy": DetectorEntry(lambda d: EnergyBased(d.post_hoc), description="energy score"),
    "mahalanobis": DetectorEntry(lambda d: Mahalanobis(d.post_hoc.features).fit_features(*d.fit),
                                 description="Mahalanobis distance to the ID class means", **_FEATURES),
    "maxlogit": DetectorEntry(lambda d: MaxLogit(d.post_hoc), description="maximum logit"),
    "knn": DetectorEntry(lambda d: KNN(d.post_hoc.features).fit_features(*d.fit),
                         description="distance to the nearest ID training feature", **_FEATURES),
    "vim": DetectorEntry(_vim, description="ViM: virtual logit from the features' residual", **_FEATURES),
    "entropy": DetectorEntry(lambda d: Entropy(d.post_hoc), description="softmax entropy"),
    "bal": DetectorEntry(_bal, feed="inputs", scored_on="BAL: MSP x discriminator", needs_extra=("discriminator",),
                         methods=("bal",), own=True, description="BAL's own score: MSP times its discriminator"),
}.items():
    DETECTORS.register(_name, _entry)


# ----------------------------------------------------------------------------- which detectors a run scores

def chosen(names: Optional[Sequence[str]]) -> list[str]:
    """The detectors asked for: ``names``, or every registered one (``None``, the default)."""
    return DETECTORS.in_order() if names is None else list(names)


def check_named(names: Optional[Sequence[str]], methods: Sequence[str]) -> None:
    """Refuse an unknown name, and a detector the user named that applies to none of ``methods``."""
    for name in names or ():
        entry = DETECTORS.get(name)
        if not any(entry.applies_to(m) for m in methods):
            needs = entry.methods
            raise ConfigError(f"detector {name!r} scores only models of method {' or '.join(needs)}, which this run "
                              f"does not train (methods: {', '.join(methods)}); add --method {needs[0]} or "
                              f"drop {name!r}")


def for_method(names: Optional[Sequence[str]], method: str) -> list[str]:
    """The detectors that score ``method``: those of ``names`` (``None``: all) that apply to it,
    then its own detectors not named."""
    base = chosen(names)
    picked = [n for n in base if DETECTORS.get(n).applies_to(method)]
    return picked + [n for n in DETECTORS.in_order()
                     if n not in picked and DETECTORS.get(n).own and DETECTORS.get(n).applies_to(method)]


def left_out(names: Optional[Sequence[str]], methods: Sequence[str]) -> dict[str, list[str]]:
    """Detector -> the methods of ``methods`` it does not apply to (and so does not score)."""
    out = {}
    for name in chosen(names):
        skip = [m for m in methods if not DETECTORS.get(name).applies_to(m)]
        if skip:
            out[name] = skip
    return out


def applicable(name: str, tm: TrainedModel) -> bool:
    """Whether detector ``name`` scores the trained model ``tm`` (its method, and what it needs)."""
    entry = DETECTORS.get(name)
    return entry.applies_to(tm.method) and entry.missing(tm) is None


def build(name: str, tm: TrainedModel, ue_variant: str, fit: Optional[tuple[Tensor, Tensor]]) -> ScoringDetector:
    """Detector ``name`` for ``tm``; ``fit`` = (ID train features, labels) for feature detectors."""
    entry = DETECTORS.get(name)
    lacking = entry.missing(tm)
    if lacking is not None:
        raise ConfigError(f"detector {name!r} needs {lacking}, which the model of method {tm.method!r} does not "
                          f"have; its entry must list only methods whose models have it (methods={entry.methods})")
    if entry.needs_fit and fit is None:
        raise InvalidArgumentError(f"detector {name!r} needs ID training features to fit on")
    inputs = BuildInputs(tm, ue_variant, fit)
    det = entry.build(inputs)
    if not callable(getattr(det, _PREDICT[entry.feed], None)):
        raise InvalidTypeError(f"detector {name!r}: build returned {type(det).__name__}, which has no "
                               f"{_PREDICT[entry.feed]}() for feed {entry.feed!r}")
    on = entry.scored_on
    if callable(on):
        on = on(inputs)
    elif on is None:
        on = {"full-logits": "K+1 logits" if tm.garbage_index is not None else "K logits",
              "id-logits": inputs.id_logits_label, "features": "penultimate features", "inputs": "inputs"}[entry.feed]
    return ScoringDetector(name, det, entry.feed, on)
