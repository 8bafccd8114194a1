"""Every public class and function documents exactly the parameters it takes."""

import inspect
import re

import pytest

import skmoe
import skmoe.datasets
import skmoe.inspection
import skmoe.nn

PUBLIC = (
    [getattr(skmoe, name) for name in skmoe.__all__ if name != "__version__"]
    + [getattr(skmoe.nn, name) for name in skmoe.nn.__all__ if name != "Routing"]
    + [getattr(skmoe.datasets, name) for name in skmoe.datasets.__all__]
    + [getattr(skmoe.inspection, name) for name in skmoe.inspection.__all__]
)


def documented_parameters(obj):
    doc = inspect.cleandoc(obj.__doc__ or "")
    match = re.search(r"^Parameters\n-+\n(.*?)(?:^\w[\w ]*\n-+\n|\Z)", doc, re.S | re.M)
    if match is None:
        return []
    return re.findall(r"^(\w+)(?: : |$)", match.group(1), re.M)


def signature_parameters(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    return [
        name
        for name, p in inspect.signature(target).parameters.items()
        if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_docstring_matches_signature(obj):
    assert documented_parameters(obj) == signature_parameters(obj)


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_public_objects_have_a_runnable_example(obj):
    assert ">>> " in (obj.__doc__ or ""), f"{obj.__name__} has no Examples section"


@pytest.mark.parametrize(
    "method",
    ["fit", "partial_fit", "predict", "score", "gate_weights"],
)
@pytest.mark.parametrize(
    "estimator",
    [
        skmoe.MixtureOfExpertsClassifier,
        skmoe.MixtureOfExpertsRegressor,
        skmoe.MultiGateMoEClassifier,
        skmoe.MultiGateMoERegressor,
    ],
)
def test_methods_document_their_parameters(estimator, method):
    func = getattr(estimator, method)
    assert documented_parameters(func) == signature_parameters(func)
