"""Each component exports its public surface from `__init__`, with `__all__`."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["bellhop_edge", "bellhop_devices", "bellhop_cloud", "bellhop_sdk", "bellhop_console"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_lists_every_public_name_once_and_each_resolves(name: str) -> None:
    package = importlib.import_module(name)
    exported = getattr(package, "__all__", None)
    assert exported is not None, f"{name}/__init__.py has no __all__"
    assert len(exported) == len(set(exported)), "a name is listed twice"
    assert list(exported) == sorted(exported, key=lambda n: (not n.isupper(), n)), "keep it sorted"
    for attribute in exported:
        assert getattr(package, attribute) is not None, f"{name}.{attribute} does not resolve"


@pytest.mark.parametrize("name", PACKAGES)
def test_nothing_public_is_defined_in_init_without_being_listed(name: str) -> None:
    package = importlib.import_module(name)
    exported = set(getattr(package, "__all__", ()))
    unlisted = {
        attribute
        for attribute, value in vars(package).items()
        if not attribute.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and getattr(value, "__module__", "").startswith(name)
        and attribute not in exported
    }
    assert not unlisted, f"{name} exposes {sorted(unlisted)} without listing them in __all__"
