"""``gradcheck``: compare an op's backward pass with central differences of its forward pass.

What is compared
----------------
For ``out = fn(*inputs)`` and an upstream gradient ``g`` (the same shape as ``out``), backpropagation
computes, for each differentiable input ``x``, the vector-Jacobian product ``J^T g``: element ``j`` is the
derivative of the scalar ``phi(x) = sum(g * fn(x))`` with respect to ``x[j]``. The checker estimates the
same derivatives from the forward pass alone::

    d phi / d x[j]  ~  (phi(x + eps e_j) - phi(x - eps e_j)) / (2 eps)        (central difference)

and requires ``|analytic - numeric| <= atol + rtol * |numeric|`` for every element.

The rules every gradient check in minigrad follows (the registry's test recipe; see
``minigrad/testing/registry.py``), and why:

* **the tolerance**: ``eps = 1e-6``, ``rtol = 1e-3``, ``atol = 1e-5`` by default; an op that needs other
  values passes them explicitly, with the reason next to it.
* **float64 throughout**: floating inputs are copied to float64 before the check; with eps = 1e-6 the
  truncation error (~eps^2) and the rounding error (~1e-16 / eps) are both far below the tolerances.
* **a random upstream gradient, never all ones**: with ``g = 1`` a wrong backward can still agree with
  the numbers. Softmax is the classic example: its outputs sum to 1, so the true gradient of
  ``sum(softmax(x))`` is exactly zero, and a backward that forgets to multiply by the softmax also
  returns zero for ``g = 1``. ``g`` is drawn from a standard normal with ``seed``.
* **full Jacobian or random directions**: for small inputs every element is perturbed on its own
  (``2 n`` forward calls for ``n`` elements) and the report can say exactly which element is wrong. For
  large inputs (a convolution's weights, a batch-norm batch) that is too slow, so the directional
  derivative along a few random directions ``v`` is checked instead (``directions="auto"`` switches above
  ``max_full_jacobian = 256`` differentiable elements; the registry asks for directions outright for
  convolutions and batch norm):
  ``<grad, v>  ~  (phi(x + eps v) - phi(x - eps v)) / (2 eps)``. A wrong gradient passes that only if
  its error happens to be orthogonal to every ``v`` drawn, which random directions make unlikely.
* **the same random numbers at every evaluation**: minigrad's CPU generator is reset to its starting
  state before each call of ``fn`` (and restored afterwards), so an op that draws random numbers (a
  dropout mask) is a fixed function of its inputs during the check.

Usage::

    from minigrad.testing import gradcheck
    gradcheck(lambda x, w: F.linear(x, w), [x_array, w_array])      # raises GradcheckError if wrong
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import backend
from .. import random as mg_random
from ..autograd import no_grad
from ..tensor import Tensor

__all__ = ["gradcheck", "GradcheckError", "GradcheckReport", "InputCheck", "numerical_vjp"]


class GradcheckError(AssertionError):
    """The analytic gradient of some input disagrees with central differences. ``report`` holds the
    :class:`GradcheckReport` with every input's result (the failing ones have ``ok == False``)."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


@dataclass
class InputCheck:
    """The comparison for one differentiable input.

    ``worst`` is the position that was furthest outside the tolerance (or closest to it when all
    passed): an element index (full mode) or a direction number (directions mode).
    """

    index: int
    shape: tuple
    mode: str                 # "full" or "directions"
    checked: int              # elements (full) or directions compared
    worst: tuple | int
    analytic: float
    numeric: float
    ok: bool
    no_gradient: bool = False  # backward gave this input no gradient at all (treated as zeros)

    @property
    def abs_err(self) -> float:
        return abs(self.analytic - self.numeric)

    @property
    def rel_err(self) -> float:
        return self.abs_err / max(abs(self.numeric), 1e-300)

    def describe(self, name: str | None = None) -> str:
        who = f"input {self.index}" + (f" ({name})" if name else "") + f" of shape {self.shape}"
        where = (f"element {self.worst}" if self.mode == "full" else f"random direction {self.worst}")
        text = (f"{who}: {where}: analytic {self.analytic:.10g}, numeric {self.numeric:.10g}, "
                f"abs err {self.abs_err:.3g}, rel err {self.rel_err:.3g} "
                f"({self.checked} {'elements' if self.mode == 'full' else 'directions'} checked)")
        if self.no_gradient:
            text += "; backward gave this input no gradient (compared as zeros)"
        return text


@dataclass
class GradcheckReport:
    """What ``gradcheck`` compared. ``str(report)`` is a readable summary."""

    inputs: list = field(default_factory=list)   # one InputCheck per differentiable input
    evaluations: int = 0                         # forward calls made for the numeric side
    eps: float = 0.0
    rtol: float = 0.0
    atol: float = 0.0
    names: tuple | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.inputs)

    def __str__(self):
        head = (f"gradcheck {'passed' if self.ok else 'FAILED'} (eps={self.eps:g}, rtol={self.rtol:g}, "
                f"atol={self.atol:g}, {self.evaluations} forward evaluations)")
        lines = [head]
        for c in self.inputs:
            name = self.names[c.index] if self.names and c.index < len(self.names) else None
            lines.append(("  ok      " if c.ok else "  WRONG   ") + c.describe(name))
        return "\n".join(lines)


class _Problem:
    """The inputs of one check, as float64 NumPy arrays, and a way to evaluate ``fn`` on them."""

    def __init__(self, fn, inputs, wrt, rng_state):
        self.fn = fn
        self.rng_state = rng_state
        self.device = "cpu"
        self.values = []     # per input: a float64 numpy array, or the input unchanged (not a float array)
        self.is_float = []
        for x in inputs:
            if isinstance(x, Tensor):
                self.device = x.device
                arr = x.numpy()
            elif backend.is_array(x):
                self.device = backend.device_of(x)
                arr = backend.to_numpy(x)
            else:
                arr = None  # a Python value (an option) passed through as it is
            if arr is not None and arr.dtype.kind == "f":
                self.values.append(np.array(arr, dtype=np.float64))
                self.is_float.append(True)
            else:
                self.values.append(x if arr is None else np.array(arr))
                self.is_float.append(False)
        floats = [i for i, f in enumerate(self.is_float) if f]
        if wrt is None:
            wrt = floats
        wrt = [int(i) for i in wrt]
        for i in wrt:
            if not 0 <= i < len(inputs) or not self.is_float[i]:
                raise ValueError(f"gradcheck: wrt names input {i}, which is not a floating-point array or Tensor "
                                 f"(floating inputs: {floats})")
        if not wrt:
            raise ValueError("gradcheck: no input to differentiate (no floating-point array among the inputs)")
        self.wrt = wrt

    def tensors(self, values, requires_grad):
        out = []
        for i, v in enumerate(values):
            if isinstance(v, np.ndarray):
                t = Tensor(backend.to_device(v.copy(), self.device))
                if requires_grad and i in self.wrt:
                    t.requires_grad = True
                out.append(t)
            else:
                out.append(v)
        return out

    def call(self, tensors):
        if self.rng_state is not None:
            mg_random.set_rng_state(self.rng_state)
        out = self.fn(*tensors)
        if not isinstance(out, Tensor):
            raise TypeError(f"gradcheck: fn must return one Tensor, got {type(out).__name__}")
        return out

    def phi(self, values, upstream):
        """sum(upstream * fn(values)) in float64, without building a graph."""
        with no_grad():
            out = self.call(self.tensors(values, requires_grad=False))
        return float(np.sum(upstream * out.numpy().astype(np.float64)))


def numerical_vjp(fn, inputs, upstream, *, wrt=None, eps=1e-6):
    """Central-difference estimate of ``J^T upstream`` for each input in ``wrt`` (default: every
    floating input), element by element. Returns a list of float64 arrays, one per ``wrt`` input.

    ``gradcheck`` uses it; it is public so that a test can show what a particular (e.g. all-ones)
    upstream gradient would or would not reveal.
    """
    problem = _Problem(fn, inputs, wrt, None)
    upstream = np.asarray(upstream, dtype=np.float64)
    return [_full_numeric(problem, i, upstream, eps)[0] for i in problem.wrt]


def _full_numeric(problem, i, upstream, eps):
    values = list(problem.values)
    base = problem.values[i]
    numeric = np.zeros(base.shape, dtype=np.float64)
    evaluations = 0
    for j in np.ndindex(*base.shape):
        x = base.copy()
        x[j] = base[j] + eps
        values[i] = x
        plus = problem.phi(values, upstream)
        x[j] = base[j] - eps
        minus = problem.phi(values, upstream)
        numeric[j] = (plus - minus) / (2 * eps)
        evaluations += 2
    return numeric, evaluations


def _worst(analytic, numeric, rtol, atol):
    """Index of the entry that is furthest outside (or closest to) ``atol + rtol * |numeric|``."""
    excess = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    flat = int(np.argmax(excess)) if excess.size else 0
    return flat, bool(excess.size == 0 or excess.max() <= 0)


def gradcheck(fn, inputs, *, eps=1e-6, rtol=1e-3, atol=1e-5, seed=0, directions="auto",
              max_full_jacobian=256, n_directions=4, wrt=None, names=None):
    """Check ``fn``'s backward pass against central differences; raise :class:`GradcheckError` if wrong.

    Parameters
    ----------
    fn : callable
        ``fn(*tensors) -> Tensor``. Called with float64 Tensors in place of the floating inputs.
    inputs : sequence
        Arrays, Tensors or other values. Floating arrays/Tensors are copied to float64 Tensors; integer
        arrays (e.g. class targets) become integer Tensors; anything else is passed through unchanged.
    eps, rtol, atol : float
        Step of the central differences and the tolerance ``|a - n| <= atol + rtol * |n|``.
    seed : int
        Seeds the random upstream gradient and the random directions.
    directions : "auto", True or False
        True: check along ``n_directions`` random directions per input; False: every element;
        "auto": every element when the differentiable inputs hold at most ``max_full_jacobian``
        elements in all, directions otherwise.
    wrt : sequence of int, optional
        Which inputs to differentiate (default: every floating input). Gradients of the others are
        not looked at.
    names : sequence of str, optional
        Names of the inputs, used in the report.

    Returns
    -------
    GradcheckReport
        When every checked gradient agrees.
    """
    if directions not in ("auto", True, False):
        raise ValueError(f"gradcheck: directions must be 'auto', True or False, got {directions!r}")
    rng_state = mg_random.get_rng_state()
    try:
        problem = _Problem(fn, inputs, wrt, rng_state)
        report = GradcheckReport(eps=eps, rtol=rtol, atol=atol, names=tuple(names) if names else None)
        rng = np.random.default_rng(seed)

        # Analytic side: one forward with a graph, one backward with a random upstream gradient.
        tensors = problem.tensors(problem.values, requires_grad=True)
        out = problem.call(tensors)
        if out.dtype.kind != "f":
            raise TypeError(f"gradcheck: fn returned a {out.dtype} tensor; it needs a floating-point output")
        if out.dtype != np.float64 and eps < 1e-3:
            raise ValueError(
                f"gradcheck: fn returned a {out.dtype} tensor; central differences with eps={eps:g} need "
                "float64 all the way through (keep fn in float64, or pass a larger eps and looser tolerances)")
        if not out.requires_grad:
            raise ValueError("gradcheck: fn's output does not depend on any input that requires a gradient "
                             "(did fn detach its inputs or run under no_grad?)")
        upstream = np.asarray(rng.standard_normal(out.shape))
        if upstream.size > 1 and np.all(upstream == 1):  # cannot happen with a normal draw; stated because it matters
            raise AssertionError("gradcheck: the upstream gradient must not be all ones")
        out.backward(gradient=upstream.astype(out.dtype))
        analytic = {}
        missing = {}
        for i in problem.wrt:
            g = tensors[i].grad
            missing[i] = g is None
            analytic[i] = np.zeros(problem.values[i].shape) if g is None else g.numpy().astype(np.float64)
        del out, tensors

        n_total = sum(problem.values[i].size for i in problem.wrt)
        use_directions = directions is True or (directions == "auto" and n_total > max_full_jacobian)

        # Numeric side, input by input.
        for i in problem.wrt:
            base = problem.values[i]
            if not use_directions:
                numeric, evaluations = _full_numeric(problem, i, upstream, eps)
                report.evaluations += evaluations
                flat, ok = _worst(analytic[i].ravel(), numeric.ravel(), rtol, atol)
                where = np.unravel_index(flat, base.shape) if base.ndim else ()
                where = tuple(int(k) for k in where)
                a_val = float(analytic[i].ravel()[flat]) if base.size else 0.0
                n_val = float(numeric.ravel()[flat]) if base.size else 0.0
                check = InputCheck(i, base.shape, "full", base.size, where, a_val, n_val, ok, missing[i])
            else:
                values = list(problem.values)
                a_dirs, n_dirs = [], []
                for _ in range(n_directions):
                    v = rng.standard_normal(base.shape)
                    values[i] = base + eps * v
                    plus = problem.phi(values, upstream)
                    values[i] = base - eps * v
                    minus = problem.phi(values, upstream)
                    report.evaluations += 2
                    n_dirs.append((plus - minus) / (2 * eps))
                    a_dirs.append(float(np.sum(analytic[i] * v)))
                flat, ok = _worst(np.array(a_dirs), np.array(n_dirs), rtol, atol)
                check = InputCheck(i, base.shape, "directions", n_directions, flat, a_dirs[flat], n_dirs[flat],
                                   ok, missing[i])
            report.inputs.append(check)
    finally:
        mg_random.set_rng_state(rng_state)

    if not report.ok:
        wrong = [c for c in report.inputs if not c.ok]
        first = wrong[0]
        name = report.names[first.index] if report.names and first.index < len(report.names) else None
        raise GradcheckError(f"gradcheck failed for {len(wrong)} of {len(report.inputs)} inputs; worst of "
                             f"{first.describe(name)}\n{report}", report)
    return report
