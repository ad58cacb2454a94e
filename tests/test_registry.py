import pytest

from niood_plugin.registry import Registry, UnknownNameError


def test_register_create_list_and_overwrite_warning():
    reg = Registry("widget")
    reg.register("a", lambda n: n * 2)

    @reg.register("b")
    def make_b(n):
        return n + 1

    assert reg.list() == ["a", "b"] and "a" in reg and len(reg) == 2
    assert reg.create("a", 3) == 6 and reg.create("b", 3) == 4 and reg.get("b") is make_b
    with pytest.warns(UserWarning, match="widget 'a' was already registered"):
        reg.register("a", lambda n: n)
    assert reg.create("a", 3) == 3


def test_unknown_names_list_the_known_ones():
    reg = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(UnknownNameError, match=r"unknown widget 'z'; choose one of \['a'\]"):
        reg.get("z")
    with pytest.raises(ValueError):  # an UnknownNameError is a ValueError (and a KeyError)
        reg.get("z")


def test_every_named_thing_uses_the_registry():
    from niood_plugin.bench.methods import METHODS
    from niood_plugin.data import DATASETS
    from niood_plugin.models import CLASSIFIERS, GENERATORS
    from niood_plugin.presets import PRESETS

    for reg in (METHODS, DATASETS, CLASSIFIERS, GENERATORS, PRESETS):
        assert isinstance(reg, Registry)
    assert {"report28", "report32"} <= set(CLASSIFIERS.list())
    assert {"inversion", "standard", "fig", "bal"} <= set(METHODS.list())
