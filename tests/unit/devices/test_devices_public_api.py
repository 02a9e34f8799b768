"""The public surface other components build on stays what it says it is."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module_name", ["bellhop_devices.codec", "bellhop_devices.sim"])
def test_every_exported_name_exists_and_nothing_public_is_unlisted(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = set(module.__all__)
    assert all(hasattr(module, name) for name in exported)
    public_callables = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and callable(value)
        and getattr(value, "__module__", "").startswith(module_name)
    }
    assert public_callables <= exported


def test_cli_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bellhop_devices.cli; "
        "print(sorted(m for m in ('aiomqtt', 'paho', 'asyncio', 'bellhop_devices.sim') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
