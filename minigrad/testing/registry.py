"""The op registry: one :class:`OpSpec` per public op, which the test-suite reads to check every op the
same way (tests/test_registry.py) and to notice an op that has no entry (tests/test_meta.py).

What the tests do with an entry
-------------------------------
For every registered ``spec`` and every case Hypothesis draws from ``spec.cases``:

1. **forward**, in each dtype of ``spec.dtypes`` (float32 and float64 by default): the floating arrays
   of the case are cast to that dtype, ``spec.fn`` runs on Tensors made from them, and the result must
   have dtype ``spec.output_dtype(case, dtype)`` (default: that dtype) and match ``spec.reference``
   evaluated in float64 on the same (cast) values, within ``spec.rtol[dtype]`` / ``spec.atol[dtype]``.
2. **gradient** (unless ``spec.grad`` is False): ``gradcheck`` in float64 with a random upstream
   gradient, differentiating the inputs listed in ``spec.differentiable`` (None: every floating input),
   on the full Jacobian or along random directions (``spec.directions``), with
   ``spec.gradcheck_options`` passed on (e.g. a looser ``atol``, a larger ``max_full_jacobian``).
3. **PyTorch** (when ``torch`` is importable and ``spec.torch_reference`` is set): forward values and
   the input gradients for the same random upstream gradient, in float64.
4. **CUDA** (``@pytest.mark.cuda``, skipped without a GPU): the forward on CuPy matches the CPU, and so
   do the gradients (only the gradients where ``spec.same_on_every_device`` is False).

Where entries live
------------------
One entries module per op family, mirroring ``minigrad/ops``: the entries of ``ops/<family>.py`` are in
``entries_<family>.py`` next to this file, and each ops module's docstring names it (tests/test_meta.py
checks both, and that every Function of ``ops/<family>.py`` is covered by an entry of that module). Every
``entries_*.py`` file here is imported by :func:`specs` (found by listing the package, not from a hand-kept
list); an error inside one propagates. Simple elementwise ops and reductions are one table row each
(``tables.py``: ``Unary``, ``Binary``, ``Reduction``); anything else is an ``OpSpec`` like this sketch::

    import numpy as np
    from hypothesis import strategies as st

    import minigrad.functional as F
    from minigrad.ops.norm import BatchNorm          # the Function subclass(es) the entry exercises
    from . import strategies as mst
    from .registry import Case, OpSpec, register

    @st.composite
    def _batch_norm_cases(draw):
        n, c = draw(st.integers(2, 4)), draw(st.integers(1, 3))
        x = draw(mst.float_arrays((n, c)))
        w = draw(mst.float_arrays((c,)))
        return Case((x, w), {"eps": 1e-5})              # arrays: positional inputs; options: keywords

    def _batch_norm_ref(x, w, eps):                     # NumPy, float64; same arguments as fn
        m, v = x.mean(0), x.var(0)
        return (x - m) / np.sqrt(v + eps) * w

    register(OpSpec(
        name="batch_norm",                              # unique; the test ids use it
        fn=lambda x, w, eps: F.batch_norm(x, None, None, w, training=True, eps=eps),
        cases=_batch_norm_cases(),
        reference=_batch_norm_ref,
        covers=(BatchNorm, "F.batch_norm"),            # what this entry tests (see below)
        torch_reference=lambda torch, x, w, eps: torch.nn.functional.batch_norm(
            x, None, None, w, training=True, eps=eps),
        directions=True,                                # random directions instead of the full Jacobian
    ))

The test recipe
---------------
The rules every check follows, whatever the op:

* forward values against a NumPy reference computed in float64, in float32 and float64;
* gradients in float64 by central differences with ``eps = 1e-6``, compared as
  ``|analytic - numeric| <= atol + rtol * |numeric|`` with ``rtol = 1e-3``, ``atol = 1e-5``
  (:func:`minigrad.testing.gradcheck`; an entry may loosen them through ``gradcheck_options``, with the
  reason in ``notes``);
* always a random upstream gradient (standard normal), never all ones;
* the full Jacobian for small inputs (at most 256 differentiable elements), random directions for large
  ones and for the ops whose entries ask for them (convolutions, batch norm: ``directions=True``);
* negative controls: deliberately broken backward passes must fail the checker (tests/test_gradcheck.py,
  and one per family with a hand-written backward: conv, batch norm, dropout, weight norm), so a check that
  passes means something.

The fields
----------
``name``
    Unique name of the entry (``register`` refuses a duplicate).
``fn(*tensors, **options) -> Tensor``
    The op under test, called with one Tensor per array of the case (integer arrays become integer
    Tensors) and the case's options as keywords.
``cases``
    A Hypothesis strategy drawing :class:`Case` objects: ``Case(arrays, options)``. ``arrays`` are
    NumPy arrays - floating ones drawn in float64 (use :mod:`minigrad.testing.strategies` to keep them
    away from kinks and ties) and integer ones for indices/targets; ``options`` are keyword arguments
    (Python values, or NumPy arrays that are not inputs, e.g. an index). The tests never differentiate
    with respect to options.
``reference(*arrays, **options) -> numpy.ndarray``
    The expected forward result, computed with NumPy (in float64; the test casts back).
``covers``
    What the entry tests, for the meta-test: ``Function`` subclasses (the classes themselves, e.g.
    ``ops.elementwise.ReLU``) and strings ``"F.<name>"`` (a ``minigrad.functional`` function),
    ``"Tensor.<name>"`` (a Tensor method, operator or property, e.g. ``"Tensor.__add__"``) or
    ``"mg.<name>"`` (a top-level ``minigrad`` function). Every ``Function`` subclass defined in
    ``minigrad.ops``, every name of ``minigrad.functional.__all__`` and every Tensor method that creates
    a graph node must be covered by some entry, or tests/test_meta.py fails. The meta-test also checks
    that each listed Function class really appears in the graph ``fn`` builds.
``torch_reference(torch, *tensors, **options) -> torch.Tensor`` (optional)
    The same computation in PyTorch (``torch`` is passed in so this module never imports it); called
    with float64 torch tensors, the differentiable ones with ``requires_grad=True``.
``differentiable``
    Indices of the inputs gradcheck differentiates (None: every floating array). Leave out inputs that
    have no gradient by design (e.g. cross-entropy's sample weights).
``directions``
    ``gradcheck``'s ``directions``: "auto" (full Jacobian for small inputs), True (random directions: use
    for ops with large inputs such as conv and batch norm) or False.
``gradcheck_options``
    Extra keyword arguments for ``gradcheck`` (``eps``, ``rtol``, ``atol``, ``max_full_jacobian``, ...).
``rtol``, ``atol``
    Forward tolerances by dtype: ``{np.float32: ..., np.float64: ...}`` (defaults in ``DEFAULT_RTOL`` /
    ``DEFAULT_ATOL``; a dict given here is merged over them).
``dtypes``
    The float dtypes the forward check runs in (default float32 and float64).
``output_dtype(case, dtype) -> dtype`` (optional)
    The expected result dtype when the case runs in ``dtype`` (default: ``dtype`` itself).
``grad``
    False for an op with no gradient (forward checks only).
``same_on_every_device``
    False for an op whose values come from a device's own random generator (CPU and GPU streams differ):
    the CUDA test then compares only the gradients.
``notes``
    Free text shown nowhere but here: why a domain or tolerance was chosen.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Case", "OpSpec", "register", "specs", "get", "covered", "entry_modules", "source_of",
           "DEFAULT_RTOL", "DEFAULT_ATOL"]

DEFAULT_RTOL = {np.float32: 1e-5, np.float64: 1e-10}
DEFAULT_ATOL = {np.float32: 1e-6, np.float64: 1e-12}

#: The prefix that makes a module of this package an entries module.
ENTRY_PREFIX = "entries_"


@dataclass(frozen=True)
class Case:
    """One drawn input of an op: positional ``arrays`` (NumPy) and keyword ``options``."""

    arrays: tuple
    options: dict = field(default_factory=dict)

    def __repr__(self):  # shown by Hypothesis for a failing example: keep shapes and values readable
        arrs = ", ".join(f"np.array({a.tolist()!r}, dtype=np.{a.dtype})" if isinstance(a, np.ndarray) else repr(a)
                         for a in self.arrays)
        return f"Case(arrays=({arrs},), options={self.options!r})"


@dataclass(frozen=True, eq=False)
class OpSpec:
    """A registry entry; see the module docstring for every field."""

    name: str
    fn: Callable
    cases: Any
    reference: Callable
    covers: tuple = ()
    torch_reference: Callable | None = None
    differentiable: tuple | None = None
    directions: Any = "auto"
    gradcheck_options: dict = field(default_factory=dict)
    rtol: dict = field(default_factory=dict)
    atol: dict = field(default_factory=dict)
    dtypes: tuple = (np.float32, np.float64)
    output_dtype: Callable | None = None
    grad: bool = True
    same_on_every_device: bool = True
    notes: str = ""

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError("OpSpec: name must be a non-empty string")
        for attr in ("fn", "reference"):
            if not callable(getattr(self, attr)):
                raise TypeError(f"OpSpec {self.name!r}: {attr} must be callable")
        if self.directions not in ("auto", True, False):
            raise ValueError(f"OpSpec {self.name!r}: directions must be 'auto', True or False")
        for c in self.covers:
            if not (isinstance(c, type) or (isinstance(c, str) and c.split(".", 1)[0] in ("F", "Tensor", "mg"))):
                raise ValueError(f"OpSpec {self.name!r}: covers entry {c!r} must be a Function subclass or a "
                                 "string 'F.<name>', 'Tensor.<name>' or 'mg.<name>'")

    def tolerances(self, dtype):
        """(rtol, atol) of the forward check in ``dtype``."""
        key = np.dtype(dtype).type
        rtol = {**DEFAULT_RTOL, **self.rtol}
        atol = {**DEFAULT_ATOL, **self.atol}
        return rtol[key], atol[key]

    def expected_dtype(self, case, dtype):
        return np.dtype(dtype if self.output_dtype is None else self.output_dtype(case, dtype))

    def __repr__(self):
        return f"OpSpec({self.name!r})"


_REGISTRY: dict = {}
_SOURCE: dict = {}      # entry name -> the entries module that registered it
_loaded = False


def _registering_module():
    """The entries module whose code is calling :func:`register` (directly or through ``tables.py``)."""
    frame = sys._getframe(2)
    while frame is not None:
        short = frame.f_globals.get("__name__", "").rsplit(".", 1)[-1]
        if short.startswith(ENTRY_PREFIX):
            return short
        frame = frame.f_back
    return None


def register(spec: OpSpec) -> OpSpec:
    """Add ``spec`` to the registry (names are unique). Returns it, so it can be used as an expression."""
    if not isinstance(spec, OpSpec):
        raise TypeError(f"register: expected an OpSpec, got {type(spec).__name__}")
    if spec.name in _REGISTRY:
        raise ValueError(f"register: an entry named {spec.name!r} already exists")
    _REGISTRY[spec.name] = spec
    _SOURCE[spec.name] = _registering_module()
    return spec


def entry_modules() -> list:
    """The names of this package's entries modules (``entries_*.py``), sorted."""
    package = importlib.import_module(__package__)
    return sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                  if info.name.startswith(ENTRY_PREFIX))


def _load():
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in entry_modules():
        importlib.import_module(f"{__package__}.{module}")


def specs() -> list:
    """Every registered entry, in registration order (the entry modules are imported on first call)."""
    _load()
    return list(_REGISTRY.values())


def get(name: str) -> OpSpec:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no registry entry named {name!r}; known: {sorted(_REGISTRY)}") from None


def source_of(name: str) -> str:
    """The entries module (e.g. ``"entries_conv"``) that registered the entry ``name``."""
    _load()
    return _SOURCE[name]


def covered() -> set:
    """Everything some entry declares in ``covers`` (Function classes and 'F.'/'Tensor.'/'mg.' strings)."""
    return {c for s in specs() for c in s.covers}
