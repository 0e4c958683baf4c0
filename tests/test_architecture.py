"""The package's structure: which module may import what, and the engine.state contract of the handlers."""

import ast
from pathlib import Path

import pytest
from ignite.engine import Engine
from torch import nn

from ignite_pseudolabel import AlphaRamp, PseudoLabelLoss, PseudoLabelMiner, SelfAdaptiveFairness

PACKAGE = Path(__file__).resolve().parents[1] / "ignite_pseudolabel"
PRIVATE_MODULES = {"_validation", "_stats"}


def absolute_imports(module):
    """Top-level packages of every absolute import of ``module``."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.module.split(".")[0]


def sibling_imports(module):
    """(sibling module, imported names) of every relative import of ``module``."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            yield node.module, [alias.name for alias in node.names]


def modules():
    return sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


@pytest.mark.parametrize("module", modules())
def test_no_module_imports_a_private_name_of_a_sibling(module):
    for sibling, names in sibling_imports(module):
        if sibling not in PRIVATE_MODULES:
            assert not [n for n in names if n.startswith("_")], f"{module} imports {names} from {sibling}"


@pytest.mark.parametrize("module", ["batch", "data", "losses"])
def test_the_batch_path_does_not_import_torchvision(module):
    assert "torchvision" not in set(absolute_imports(module))
    assert "augment" not in {sibling for sibling, _ in sibling_imports(module)}


def test_batch_depends_on_no_other_module_of_the_package():
    assert list(sibling_imports("batch")) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: AlphaRamp(param_name="unlabeled_weight"),
        lambda: PseudoLabelLoss(fairness=SelfAdaptiveFairness(3)),
        lambda: PseudoLabelMiner(nn.Linear(2, 3), [[0.0, 1.0]]),
    ],
    ids=["ramp", "loss", "miner"],
)
def test_handlers_publish_exactly_the_state_attributes_they_declare(make):
    handler = make()
    engine = Engine(lambda e, b: None)
    before = set(vars(engine.state))
    handler.attach(engine)
    assert set(vars(engine.state)) - before == set(handler.state_attributes)


def test_root_api_is_small_and_moved_names_warn():
    import importlib
    import warnings

    import ignite_pseudolabel

    assert len(ignite_pseudolabel.__all__) <= 25
    for name in ignite_pseudolabel.__all__:
        assert getattr(ignite_pseudolabel, name) is not None
    for name, module in ignite_pseudolabel._MOVED.items():
        assert name not in ignite_pseudolabel.__all__
        with pytest.warns(DeprecationWarning, match=f"import it from ignite_pseudolabel.{module} instead"):
            alias = getattr(ignite_pseudolabel, name)
        assert alias is getattr(importlib.import_module(f"ignite_pseudolabel.{module}"), name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace: dict = {}
        exec("from ignite_pseudolabel import *", namespace)  # only __all__: no deprecated name, no warning
        assert set(namespace) - {"__builtins__"} == set(ignite_pseudolabel.__all__)
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        ignite_pseudolabel.not_a_name  # noqa: B018
