"""The registry covers every public op: a new op without an entry fails here.

"Public op" means three things, each found by looking at the code rather than at a hand-kept list:

* every ``Function`` subclass defined in a module of ``minigrad.ops`` (all of them, imported by name);
* every name in ``minigrad.functional.__all__``;
* every public Tensor method, operator or property that creates a graph node. Which ones do is decided
  by calling each of them on a small tensor that requires a gradient and looking for a ``grad_fn`` (with
  no arguments, or with the call ``GRAPH`` gives). The methods that make no node are listed in
  ``NON_GRAPH`` with the reason; any other public name must build a node and be covered, so adding a
  Tensor method forces a decision.

The registry is laid out like ``minigrad/ops``: every ``ops/<family>.py`` names its
``minigrad/testing/entries_<family>.py``, whose entries cover every Function defined in that ops module.

It also checks the entries themselves: every ``covers`` item names something that exists, and every
Function class an entry claims to cover really appears in the graph its ``fn`` builds.
"""
import importlib
import pkgutil

import numpy as np
import pytest
from hypothesis import given, settings

import minigrad as mg
import minigrad.functional as F
import minigrad.ops
from minigrad import Function, Tensor
from minigrad.testing.registry import covered, specs

# ----------------------------------------------------------------------------- what must be covered


def _ops_functions():
    """Every Function subclass defined (not just imported) in a module of minigrad.ops."""
    found = []
    for info in pkgutil.iter_modules(minigrad.ops.__path__):
        module = importlib.import_module(f"minigrad.ops.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and issubclass(obj, Function) and obj is not Function \
                    and obj.__module__ == module.__name__:
                found.append(obj)
    return found


def _leaf(shape=(2, 3), dtype=np.float64):
    data = np.linspace(0.5, 1.5, int(np.prod(shape))).reshape(shape)
    return mg.tensor(data, dtype=dtype, requires_grad=True)


# How to call the Tensor methods that build a graph node and need arguments (or a special input): name ->
# function of a (2, 3) float64 leaf. Any other public name that is not in NON_GRAPH is probed by calling it
# with no arguments (or reading it, for a property); a name that cannot be called that way fails the test
# until it is listed here or in NON_GRAPH.
GRAPH = {
    "__add__": lambda x: x + x, "__radd__": lambda x: 2.0 + x,
    "__sub__": lambda x: x - x, "__rsub__": lambda x: 2.0 - x,
    "__mul__": lambda x: x * x, "__rmul__": lambda x: 2.0 * x,
    "__truediv__": lambda x: x / x, "__rtruediv__": lambda x: 2.0 / x,
    "__matmul__": lambda x: x @ x.T.detach(), "__rmatmul__": lambda x: x.__rmatmul__(np.ones((4, 2))),
    "__pow__": lambda x: x ** 2, "__rpow__": lambda x: 2.0 ** x, "pow": lambda x: x.pow(3),
    "__getitem__": lambda x: x[0], "matmul": lambda x: x.matmul(x.T.detach()),
    "logsumexp": lambda x: x.logsumexp(1), "softmax": lambda x: x.softmax(1),
    "log_softmax": lambda x: x.log_softmax(1),
    "reshape": lambda x: x.reshape(-1), "view": lambda x: x.view(3, 2),
    "unsqueeze": lambda x: x.unsqueeze(0), "squeeze": lambda x: _leaf((2, 1, 3)).squeeze(1),
    "permute": lambda x: x.permute(1, 0), "transpose": lambda x: x.transpose(0, 1),
    "to": lambda x: x.to(np.float32), "double": lambda x: _leaf(dtype=np.float32).double(),
}


# Public names that make no graph node, and why.
NON_GRAPH = {
    "data": "the raw array", "grad": "the accumulated gradient", "requires_grad": "a flag",
    "shape": "metadata", "dtype": "metadata", "device": "metadata", "ndim": "metadata", "is_leaf": "metadata",
    "grad_fn": "metadata", "size": "metadata", "dim": "metadata", "numel": "metadata",
    "__len__": "metadata", "__repr__": "text",
    "item": "a Python number", "tolist": "Python lists", "numpy": "a NumPy array",
    "__bool__": "a Python bool", "__float__": "a Python float", "__int__": "a Python int",
    "detach": "cuts the graph by design", "backward": "runs the graph", "retain_grad": "autograd flag",
    "zero_grad_": "resets .grad", "requires_grad_": "sets the flag on a leaf",
    "argmax": "integer indices: no gradient",
    "long": "an integer result leaves the graph (forward checked by the cast_to_integer entry)",
    "__eq__": "bool result", "__ne__": "bool result", "__lt__": "bool result", "__le__": "bool result",
    "__gt__": "bool result", "__ge__": "bool result",
    "__pos__": "returns the tensor itself",
    "cpu": "x.to('cpu'): no node on the CPU; the device copy is ToDevice (entry to_device)",
    "cuda": "x.to('cuda'): the device copy is ToDevice (entry to_device)",
}

# Calls that check a NON_GRAPH method really makes no node (the others return non-Tensors or need a GPU).
NON_GRAPH_CALLS = {
    "detach": Tensor.detach, "argmax": Tensor.argmax, "long": Tensor.long, "__pos__": lambda x: +x,
    "__eq__": lambda x: x == x, "__lt__": lambda x: x < 1.0, "cpu": Tensor.cpu,
}

# Python machinery on the class, not part of its API.
INFRASTRUCTURE = {"__module__", "__doc__", "__slots__", "__init__", "__hash__", "__array_priority__",
                  "__weakref__", "__dict__", "__annotations__", "__qualname__", "__firstlineno__",
                  "__static_attributes__"}


def _public_tensor_names():
    names = set()
    for cls in Tensor.__mro__[:-1]:  # everything but object
        for name in vars(cls):
            dunder = name.startswith("__") and name.endswith("__")
            if (dunder or not name.startswith("_")) and name not in INFRASTRUCTURE:
                names.add(name)
    return names


# ----------------------------------------------------------------------------- coverage


def test_every_ops_function_has_an_entry():
    functions = _ops_functions()
    assert len(functions) >= 20, "the scan of minigrad.ops found suspiciously few Function subclasses"
    missing = sorted(f"{f.__module__}.{f.__qualname__}" for f in functions if f not in covered())
    assert not missing, f"Function subclasses with no registry entry (add one to minigrad/testing/entries_*.py): {missing}"


def test_every_functional_name_has_an_entry():
    missing = sorted(name for name in F.__all__ if f"F.{name}" not in covered())
    assert not missing, f"minigrad.functional functions with no registry entry: {missing}"


def test_every_public_tensor_name_is_classified():
    names = _public_tensor_names()
    both = sorted(set(GRAPH) & set(NON_GRAPH))
    assert not both, f"listed both as graph and non-graph: {both}"
    stale = sorted((set(GRAPH) | set(NON_GRAPH)) - names)
    assert not stale, f"tests/test_meta.py lists Tensor names that no longer exist: {stale}"


def _probe(name):
    """Call Tensor.<name> on a leaf: GRAPH's call when listed, else with no arguments (a property is read)."""
    if name in GRAPH:
        return GRAPH[name](_leaf())
    leaf = _leaf()
    if isinstance(getattr(Tensor, name), property):
        return getattr(leaf, name)
    try:
        return getattr(leaf, name)()
    except TypeError as exc:
        pytest.fail(f"Tensor.{name} needs arguments: add a call to GRAPH if it builds a graph node, else add it "
                    f"to NON_GRAPH with the reason, in tests/test_meta.py ({exc})")


@pytest.mark.parametrize("name", sorted(_public_tensor_names() - set(NON_GRAPH)))
def test_graph_method_builds_a_node_and_has_an_entry(name):
    out = _probe(name)
    assert isinstance(out, Tensor) and out.grad_fn is not None, (
        f"Tensor.{name} made no graph node; add it to NON_GRAPH (with the reason) if that is intended")
    assert f"Tensor.{name}" in covered(), f"Tensor.{name} builds a graph node but no registry entry covers it"


@pytest.mark.parametrize("name", sorted(NON_GRAPH_CALLS))
def test_non_graph_method_builds_no_node(name):
    out = NON_GRAPH_CALLS[name](_leaf())
    assert out.grad_fn is None, f"Tensor.{name} built a graph node: move it to GRAPH and give it an entry"


# ----------------------------------------------------------------------------- the entries themselves


def test_entry_names_are_unique_and_covers_exist():
    entries = specs()
    assert len({s.name for s in entries}) == len(entries)
    tensor_names = _public_tensor_names()
    for s in entries:
        for c in s.covers:
            if isinstance(c, type):
                assert issubclass(c, Function), f"{s.name}: {c} is not a Function subclass"
                continue
            space, name = c.split(".", 1)
            if space == "F":
                assert name in F.__all__, f"{s.name}: covers {c}, which is not in minigrad.functional.__all__"
            elif space == "Tensor":
                assert name in tensor_names, f"{s.name}: covers {c}, which is not a public Tensor name"
            else:
                assert hasattr(mg, name), f"{s.name}: covers {c}, which minigrad does not have"


def _graph_functions(out):
    """The Function classes of every node in the graph behind ``out``."""
    seen, stack, classes = set(), [out], set()
    while stack:
        t = stack.pop()
        node = t._node
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        classes.add(node.fn)
        stack.extend(i for i in node.inputs if isinstance(i, Tensor))
    return classes


@pytest.mark.parametrize("spec", [s for s in specs() if s.grad], ids=lambda s: s.name)
def test_declared_functions_appear_in_the_graph(spec):
    declared = {c for c in spec.covers if isinstance(c, type)}
    seen = set()

    @settings(max_examples=30)
    @given(spec.cases)
    def run(case):
        wrt = spec.differentiable
        tensors = [mg.tensor(a, requires_grad=(a.dtype.kind == "f" and (wrt is None or i in wrt)))
                   if isinstance(a, np.ndarray) else a for i, a in enumerate(case.arrays)]
        seen.update(_graph_functions(spec.fn(*tensors, **case.options)))

    run()
    missing = sorted(c.__name__ for c in declared - seen)
    assert not missing, f"{spec.name} declares {missing} in covers, but they never appear in the graph of its fn"


def test_entry_modules_are_discovered_and_their_import_errors_surface(tmp_path, monkeypatch):
    """The registry imports every entries_*.py of its package (no list to keep), nothing else, and an
    ImportError raised inside an entries module propagates."""
    import sys

    from minigrad.testing import registry

    package = tmp_path / "fake_entries_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "entries_one.py").write_text("LOADED = True\n")
    (package / "entries_two.py").write_text("import a_module_that_does_not_exist\n")
    (package / "helpers.py").write_text("LOADED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "__package__", "fake_entries_pkg")
    monkeypatch.setattr(registry, "_loaded", False)
    assert registry.entry_modules() == ["entries_one", "entries_two"]
    with pytest.raises(ImportError, match="a_module_that_does_not_exist"):
        registry._load()

    (package / "entries_two.py").write_text("LOADED = True\n")
    (package / "entries_three.py").write_text("LOADED = True\n")   # a new file is found without a list
    for name in [m for m in sys.modules if m.startswith("fake_entries_pkg")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(registry, "_loaded", False)
    registry._load()
    assert all(sys.modules[f"fake_entries_pkg.entries_{n}"].LOADED for n in ("one", "two", "three"))
    assert "fake_entries_pkg.helpers" not in sys.modules


def _ops_modules():
    return sorted(info.name for info in pkgutil.iter_modules(minigrad.ops.__path__))


@pytest.mark.parametrize("family", _ops_modules())
def test_entries_mirror_the_ops_modules(family):
    """ops/<family>.py names its entries module, which exists and covers every Function defined there."""
    from minigrad.testing import registry

    module = importlib.import_module(f"minigrad.ops.{family}")
    entries = f"entries_{family}"
    assert entries in registry.entry_modules(), f"minigrad/testing/{entries}.py is missing"
    assert f"minigrad/testing/{entries}.py" in (module.__doc__ or ""), \
        f"the docstring of minigrad/ops/{family}.py does not name minigrad/testing/{entries}.py"
    own = {c for s in specs() if registry.source_of(s.name) == entries for c in s.covers}
    functions = [f for f in _ops_functions() if f.__module__ == module.__name__]
    missing = sorted(f.__name__ for f in functions if f not in own)
    assert not missing, f"Functions of ops/{family}.py with no entry in {entries}.py: {missing}"


def test_every_entries_module_mirrors_an_ops_module():
    from minigrad.testing import registry

    stray = [m for m in registry.entry_modules() if m[len("entries_"):] not in _ops_modules()]
    assert not stray, f"entries modules with no ops module of that name: {stray}"


def test_registry_keeps_at_least_its_entries():
    assert len(specs()) >= 54
