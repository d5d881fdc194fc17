"""The package's layers: the modules at its top (config, params, errors, files, runtime, registry, cluster) ←
data ← learn ← report, use ← the CLI. A module imports only from its own layer or one below, lazy imports
included, so each layer can be read, tested and changed without the ones above it."""
import ast

import pytest

from helpers import ROOT

LAYERS = {None: 0, "data": 1, "learn": 2, "report": 3, "use": 3, "__main__": 4}


def layer_of(parts):
    """The layer of a module under valence/ by its dotted parts after "valence"."""
    return parts[0] if parts and (parts[0] in LAYERS) else None


def imports(path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)


def crossings(package):
    """(module, what it imports) for every import of a later layer, or of a sibling layer at the same rank."""
    found = []
    for path in sorted(package.rglob("*.py")):
        own = layer_of(path.relative_to(package).with_suffix("").parts)
        for name in imports(path):
            parts = name.split(".")
            if parts[0] != package.name:
                continue
            other = layer_of(parts[1:])
            if LAYERS[other] > LAYERS[own] or (LAYERS[other] == LAYERS[own] and other != own and other is not None):
                found.append((str(path.relative_to(package.parent)), name))
    return found


def test_no_module_imports_a_later_layer():
    assert crossings(ROOT / "valence") == []


def test_a_crossing_is_found(tmp_path):
    package = tmp_path / "valence"
    (package / "data").mkdir(parents=True)
    (package / "report").mkdir()
    (package / "data/labels.py").write_text("def f():\n    from valence.learn import heads\n")
    (package / "report/plots.py").write_text("from valence.use.predict import columns\nfrom valence.data import labels\n")
    assert crossings(package) == [("valence/data/labels.py", "valence.learn"),
                                  ("valence/data/labels.py", "valence.learn.heads"),
                                  ("valence/report/plots.py", "valence.use.predict"),
                                  ("valence/report/plots.py", "valence.use.predict.columns")]


@pytest.mark.parametrize("stage", sorted(p.name for p in (ROOT / "stages").glob("*.py") if p.name != "__init__.py"))
def test_stages_stay_thin(stage):
    """A stage parses params, calls the package and writes outputs: no learning code of its own (no scikit-learn,
    no Keras) and a short script."""
    text = (ROOT / "stages" / stage).read_text()
    assert not any(name.split(".")[0] in ("sklearn", "keras", "tensorflow") for name in imports(ROOT / "stages" / stage))
    assert len(text.splitlines()) <= 140, f"{stage}: {len(text.splitlines())} lines"
