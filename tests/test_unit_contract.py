# SPDX-License-Identifier: GPL-2.0-or-later
# Copyright (C) 2026 the vupy authors
"""Unit tests of the module contract (vupy/stack.py) and of what is said
about it: no kernel, no session."""
import ast
import errno
import inspect
import pathlib
import re
import tomllib

import pytest

from vupy import helpers, stack
from vupy.modules.lwip import LwipStack

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROXY_OPERATIONS = {"bind": (b"",), "connect": (b"",), "listen": (1,), "accept": (), "getsockname": (),
                    "getpeername": (), "getsockopt": (1, 2, 4), "setsockopt": (1, 2, b""),
                    "sendto": (b"", 0, b"")}


def built_in_modules():
    entry_points = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["vupy.stacks"]
    return {name for name, target in entry_points.items() if target.startswith("vupy.modules.")}


@pytest.mark.parametrize("name", sorted(PROXY_OPERATIONS))
def test_proxy_operation_a_stack_leaves_out_fails_with_eopnotsupp(name):
    with pytest.raises(OSError) as e:
        getattr(stack.ProxyStack(), name)(7, *PROXY_OPERATIONS[name])
    assert e.value.errno == errno.EOPNOTSUPP


def test_stack_that_serves_nothing_refuses_every_socket():
    with pytest.raises(OSError) as e:
        stack.Stack().socket(2, 1, 0, None)
    assert e.value.errno == errno.EAFNOSUPPORT
    assert stack.Stack().open_sockets() == 0 and stack.Stack().close() is None
    assert list(stack.ProxyStack().closed()) == [] and stack.ProxyStack().links() == []


def test_every_operation_of_the_contract_is_typed_and_documented():
    for cls in (stack.StackModule, stack.Stack, stack.ProxyStack):
        for name, function in vars(cls).items():
            if name.startswith("_") or not callable(getattr(cls, name)):
                continue
            function = getattr(cls, name)
            signature = inspect.signature(function)
            assert function.__doc__, f"{cls.__name__}.{name} has no docstring"
            assert signature.return_annotation is not inspect.Signature.empty, f"{cls.__name__}.{name}"
            for parameter in list(signature.parameters.values())[1:] if name != "unavailable" else []:
                assert parameter.annotation is not inspect.Parameter.empty, f"{cls.__name__}.{name}({parameter})"
    assert set(PROXY_OPERATIONS) | {"closed", "links"} <= set(vars(stack.ProxyStack))


def test_lwip_proxy_operations_take_the_contracts_arguments():
    for name in set(PROXY_OPERATIONS) | {"closed", "links", "socket", "open_sockets", "close"}:
        contract = getattr(stack.ProxyStack, name)
        assert (list(inspect.signature(getattr(LwipStack, name)).parameters)
                == list(inspect.signature(contract).parameters)), name


def test_a_module_without_create_cannot_be_made():
    class Incomplete(stack.StackModule):
        name = "incomplete"

    with pytest.raises(TypeError):
        Incomplete()


def test_contract_holds_only_the_contract():
    """Helper processes, namespaces and capabilities are vupy.helpers', not
    names of the contract."""
    assert set(stack.__all__) == {"StackModule", "Stack", "KernelStack", "ProxyStack", "StackError",
                                  "KERNEL_FAMILIES"}
    for name in helpers.__all__:
        assert not hasattr(stack, name), name


def test_core_imports_no_stack_module():
    """vupy's core makes the host stack itself: no module of vupy/ imports
    a plug-in of modules/ (installed as vupy.modules)."""
    for path in (ROOT / "vupy").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                module = "." * node.level + (node.module or "")
                assert not re.match(r"(\.|vupy\.)modules\b", module), f"{path.name} imports {module}"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("vupy.modules") for a in node.names), path.name


def test_lists_of_the_built_in_modules_name_all_of_them():
    """Wherever the text enumerates vupy's own modules, all of them are
    there, and no count says otherwise."""
    modules = built_in_modules()
    assert modules == {"netns", "host", "null", "lwip", "vde"}
    listing = re.compile(r"`?netns`?,\s+`?host`?(?:,|\s+and)\s+`?null`?(.{0,40})", re.S)
    texts = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "vupy").glob("*.py"),
             *(ROOT / "modules").glob("*.py")]
    for path in texts:
        text = path.read_text()
        for match in listing.finditer(text):
            rest = match.group(1)
            assert "lwip" in rest and "vde" in rest, f"{path.name}: {match.group(0)!r}"
        assert not re.search(r"(own|built-in)\s+(three|four)\b", text), path.name
