"""The modules of niood_plugin.data import one way: the spec and shared helpers at the bottom, one
family of sources each above them, the catalog that names every dataset on top."""
from pathlib import Path

from niood_plugin import data as D


def _data_imports() -> dict[str, set[tuple[str, str]]]:
    """module -> (module, name) it imports from a sibling in niood_plugin/data, lazy and
    TYPE_CHECKING imports included."""
    import ast

    folder = Path(D.__file__).parent
    mods = {p.stem for p in folder.glob("*.py")}
    graph = {}
    for m in mods:
        tree = ast.parse((folder / f"{m}.py").read_text())
        graph[m] = {(n.module.split(".")[0], a.name) for n in ast.walk(tree)
                    if isinstance(n, ast.ImportFrom) and n.level == 1 and n.module
                    and n.module.split(".")[0] in mods for a in n.names}
    return graph


def test_data_modules_import_one_way():
    """Spec and shared helpers at the bottom, one family of sources each above, the catalog on
    top: no import cycle, no private name of a sibling, no source importing another or the catalog."""
    graph = _data_imports()
    private = sorted(f"{m} <- {t}.{n}" for m, deps in graph.items() for t, n in deps if n.startswith("_"))
    assert not private
    below: dict[str, set[str]] = {}

    def reach(m, path=()):
        assert m not in path, f"import cycle: {' -> '.join(path + (m,))}"
        if m not in below:
            below[m] = set().union(*[{t} | reach(t, path + (m,)) for t, _ in graph[m]] or [set()])
        return below[m]

    for m in graph:
        reach(m)
    sources = {"images", "torchvision_sets", "web_sets", "bundled"}
    for m in sources:
        assert not below[m] & (sources | {"catalog", "__init__"}), m
    assert below["source"] <= {"storage"} and below["decode"] <= {"storage"}
