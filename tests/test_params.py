"""featpipe.params: declared constraints, one-line errors naming the parameter; the typed
configs that use them; and the import floors of the classical package."""

import ast
from pathlib import Path

import numpy as np
import pytest

from featpipe.classical.search import SearchConfig
from featpipe.cli import as_flags
from featpipe.errors import FeatpipeError
from featpipe.params import (
    HasMethods,
    InstanceOf,
    Interval,
    InvalidParameterError,
    Options,
    SequenceOf,
    describe,
    validate,
)
from featpipe.workflows.fit import TrainingSpec

FEATPIPE = Path(__file__).resolve().parents[1] / "featpipe"


@pytest.mark.parametrize("constraint, good, bad", [
    (Interval(int, 2, None), [2, 5, np.int64(3)], [1, 2.0, True, "3", None]),
    (Interval(float, 0, 1, closed="neither"), [0.5, 1e-9], [0, 1, float("nan"), False]),
    (Options(("fast", "grid")), ["fast", "grid"], ["slow", None, "FAST"]),
    (Options((False,)), [False], [0, None, True]),
    (InstanceOf(dict), [{}], [[], None]),
    (HasMethods("get_n_splits"), [__import__("sklearn.model_selection").model_selection.KFold()],
     [3, None]),
    (SequenceOf(str), [["a"], ("a", "b"), []], ["ab", [1], None]),
])
def test_constraints_accept_and_refuse(constraint, good, bad):
    for value in good:
        assert constraint.satisfied_by(value), value
        validate({"p": value}, {"p": [constraint]})
    for value in bad:
        assert not constraint.satisfied_by(value), value
        with pytest.raises(InvalidParameterError, match=r"^`p` must be "):
            validate({"p": value}, {"p": [constraint]})


def test_messages_are_one_line_and_name_the_parameter():
    with pytest.raises(FeatpipeError) as info:
        validate({"cv": 1}, {"cv": [Interval(int, 2, None)]})
    assert str(info.value) == "`cv` must be an int >= 2, got 1"
    with pytest.raises(ValueError) as info:  # a ValueError, as scikit-learn raises
        validate({"grid": np.zeros((3, 40))}, {"grid": [dict, None]})
    assert "\n" not in str(info.value) and str(info.value).startswith("`grid` must be a dict or")
    assert len(str(info.value)) < 160
    assert describe([int, "boolean", None]) == "an int, a bool or None"
    validate({"unconstrained": object()}, {"cv": [int]})  # only declared parameters are checked


def test_the_cli_words_parameters_as_flags():
    with pytest.raises(FeatpipeError) as info:
        TrainingSpec(n_jobs="2")
    assert str(info.value) == "`n_jobs` must be an int or None, got '2'"
    assert as_flags(str(info.value)) == "--n-jobs must be an int or None, got '2'"
    assert as_flags("Fix the `grid` values; lower `cv`") == "Fix the --grid values; lower --cv"


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "slow"}, "`method` must be one of fast, grid, halving, got 'slow'"),
    ({"cv": 1}, "`cv` must be an int >= 2 or a CV splitter, got 1"),
    ({"scoring": "f1"}, "`scoring` must be one of accuracy, balanced_accuracy, got 'f1'"),
    ({"patience": 0}, "`patience` must be an int >= 1 or None, got 0"),
    ({"cache": "sometimes"}, "`cache` must be a bool or auto, got 'sometimes'"),
])
def test_search_config_validates_its_options(kwargs, message):
    with pytest.raises(InvalidParameterError) as info:
        SearchConfig(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("kwargs, message", [
    ({"grid": ["clf__C=1"]}, "`grid` must be a dict of parameter names to values, got "
                             "['clf__C=1']"),
    ({"reduce": "pca:8"}, "`reduce` must be a Reduction, False or None, got 'pca:8'"),
    ({"search": "slow"}, "`search` must be one of fast, grid, halving, got 'slow'"),
    ({"layers": 3}, "`layers` must be a list of str, a str or None, got 3"),
    ({"recipe": "fnee"}, "`recipe` must be one of fne, l2, linear-probe, ridge, pca-svm, "
                         "umap-knn or None, got 'fnee'"),
])
def test_training_spec_validates_its_options(kwargs, message):
    with pytest.raises(InvalidParameterError) as info:
        TrainingSpec(**kwargs)
    assert str(info.value) == message


def test_training_spec_builds_its_search_config_and_describes_itself_as_json():
    from featpipe.classical.recipes import Reduction

    spec = TrainingSpec(layers=["a"], reduce=Reduction("pca", 8), grid={"clf__C": (0.1, 1)},
                        search="halving", seed=3, cv=4)
    config = spec.search_config()
    assert (config.method, config.cv, config.random_state, config.cache_dir) == (
        "halving", 4, 3, None)  # no cache persists unless asked for (issue 14)
    described = spec.describe()
    assert described["reduce"] == "pca:8" and described["grid"] == {"clf__C": [0.1, 1]}
    assert TrainingSpec(reduce=False).describe()["reduce"] == "none"
    assert TrainingSpec().describe()["reduce"] is None
    odd = TrainingSpec(grid={"clf__C": np.array([0.1, 1.0]), "clf__class_weight": "balanced"})
    assert odd.describe()["grid"] == {"clf__C": [0.1, 1.0], "clf__class_weight": ["balanced"]}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package, forbidden", [
    ("classical", ("featpipe.cli", "featpipe.workflows", "featpipe.report")),
    ("params.py", ("featpipe.cli", "featpipe.workflows", "featpipe.classical", "featpipe.store",
                   "featpipe.models", "featpipe.data", "featpipe.extract")),
])
def test_lower_floors_never_import_upper_ones(package, forbidden):
    root = FEATPIPE / package
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
    assert files
    offending = {f"{path.relative_to(FEATPIPE)}: {name}" for path in files
                 for name in _imports(path) if name.startswith(forbidden)}
    assert not offending
