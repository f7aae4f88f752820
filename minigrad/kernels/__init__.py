"""Raw-array kernels: where the ops of ``minigrad/ops`` get their speed. The ops hold the math (what is
computed, forward and backward, and why); a kernel computes one named piece of it on raw arrays.

Kernels come in *families*, one per op family that has fast kernels. Every module of a family implements
the same functions with the same arguments and results, and says whether it handles given arrays
(``supports(*arrays)``):

==============  ============================  =========================  ==========================
family          reference (any array module)  fast, NumPy (numba)        fast, CuPy
==============  ============================  =========================  ==========================
conv            ``im2col.py``                 ``conv_cpu.py``            ``conv_cuda.py``
norm            ``norm_reference.py``         ``norm_cpu.py``            ``norm_cuda.py``
elementwise     ``elementwise_reference.py``  ``elementwise_cpu.py``     ``elementwise_cuda.py``
optim           ``optim_reference.py``        ``optim_cpu.py``           ``optim_cuda.py``
loss            ``loss_reference.py``         the reference              ``loss_cuda.py``
shape           ``shape_reference.py``        the reference              ``shape_cuda.py``
matmul          ``matmul_reference.py``       the reference              ``matmul_cuda.py``
dropout         ``dropout_reference.py``      ``dropout_philox_cpu.py``  ``dropout_philox_cuda.py``
weight_norm     ``weight_norm_reference.py``  ``weight_norm_cpu.py``     the reference
noise           ``noise_reference.py``        ``noise_cpu.py``           the reference
average         ``average_reference.py``      ``average_cpu.py``         the reference
==============  ============================  =========================  ==========================

An op asks for the module that handles its arrays, and calls it; there is no other way to reach a kernel::

    k = kernels.for_arrays("conv", x)          # conv_cpu for a NumPy x, conv_cuda for a CuPy x
    cols = k.im2col(x, kernel_size, stride, padding)

The reference modules are plain array code, readable, and run on NumPy and CuPy alike; the fast modules are
tested against them. The *path* decides between the two: ``"fast"`` (the default) takes the first fast
module of the family that supports the arrays (the reference when none does: a float16 array, a
non-contiguous optimizer state...), ``"reference"`` takes the reference everywhere - for debugging, and for
tests that compare the two. The environment variable ``MINIGRAD_KERNELS=reference`` sets it for a whole run;
:func:`set_path` and :func:`use` set it from code.

Every Python function of a fast module checks the sizes of the arrays it hands to compiled code
(``checks.py``): a wrong size is a ``ValueError`` naming the kernel and the shapes, never a read past the
end of a buffer.

The CuPy modules exist to cut kernel launches (on a GPU a small launch costs more than its work). A fast
module may offer more than its family's interface: ``norm_cuda.py`` also runs batch norm's whole forward and
backward passes in one kernel each (``FUSED``), and ``ops/norm.py`` hands it the whole pass; ``conv_cuda.py``
hands activations on in channel rows, the order a convolution's product comes in, and the CUDA kernels next
to convolutions read and write that order, so that no kernel is spent on layout moves.
"""
from __future__ import annotations

import contextlib
import importlib
import os

PATHS = ("fast", "reference")

#: family -> (reference module, fast modules in the order they are tried)
FAMILIES = {
    "conv": ("im2col", ("conv_cpu", "conv_cuda")),
    "norm": ("norm_reference", ("norm_cpu", "norm_cuda")),
    "elementwise": ("elementwise_reference", ("elementwise_cpu", "elementwise_cuda")),
    "optim": ("optim_reference", ("optim_cpu", "optim_cuda")),
    "loss": ("loss_reference", ("loss_cuda",)),
    "shape": ("shape_reference", ("shape_cuda",)),
    "matmul": ("matmul_reference", ("matmul_cuda",)),
    "dropout": ("dropout_reference", ("dropout_philox_cpu", "dropout_philox_cuda")),
    "weight_norm": ("weight_norm_reference", ("weight_norm_cpu",)),
    "noise": ("noise_reference", ("noise_cpu",)),
    "average": ("average_reference", ("average_cpu",)),
}

#: the functions every module of a family provides (tests check each module against this list)
INTERFACES = {
    "conv": ("supports", "im2col", "col2im", "to_channel_rows", "from_channel_rows", "channel_sum"),
    "norm": ("supports", "channel_stats", "normalize", "backward_sums", "training_dx"),
    "elementwise": ("supports", "leaky_relu", "leaky_relu_backward", "sigmoid", "tanh_backward", "abs_backward",
                    "relu", "relu_backward", "softplus", "softplus_backward"),
    "optim": ("supports", "adam_update", "adam_update_joined"),
    "loss": ("supports", "shifted_logsumexp", "logsumexp", "log_softmax", "cross_entropy", "cross_entropy_backward",
             "bce_with_logits", "bce_with_logits_backward"),
    "shape": ("supports", "concatenate", "stack", "scatter"),
    "matmul": ("supports", "linear"),
    "dropout": ("supports", "blocks", "philox_dropout"),
    "weight_norm": ("supports", "weight_norm", "weight_norm_backward"),
    "noise": ("supports", "blocks", "add_normal"),
    "average": ("supports", "average_update"),
}

_path = None  # None: not chosen in code, follow $MINIGRAD_KERNELS
_modules = {}  # module name -> module, imported on first use (numba and CuPy load only when needed)


def _checked(name, source):
    if name not in PATHS:
        raise ValueError(f"kernels: {source} must be one of {PATHS}, got {name!r}")
    return name


def get_path() -> str:
    """The kernel path in force: ``"fast"`` or ``"reference"``. Unless :func:`set_path` chose one, it is read
    from ``$MINIGRAD_KERNELS`` on every call (unset or empty means ``"fast"``; anything else is an error, so a
    misspelt ``referense`` does not silently run the fast kernels)."""
    if _path is not None:
        return _path
    return _checked(os.environ.get("MINIGRAD_KERNELS", "").strip().lower() or "fast", "$MINIGRAD_KERNELS")


def set_path(name) -> None:
    """Choose the kernel path for the rest of the run (``None`` goes back to ``$MINIGRAD_KERNELS``)."""
    global _path
    _path = None if name is None else _checked(name, "the kernel path")


@contextlib.contextmanager
def use(name):
    """``with kernels.use("reference"): ...`` runs the block on the given path, then restores the old one."""
    global _path
    previous = _path
    set_path(name)
    try:
        yield
    finally:
        _path = previous


def module(name):
    """The kernel module ``minigrad.kernels.<name>`` (imported once)."""
    found = _modules.get(name)
    if found is None:
        found = _modules[name] = importlib.import_module(f"{__name__}.{name}")
    return found


def for_arrays(family, *arrays):
    """The module of kernel ``family`` (a key of :data:`FAMILIES`) that handles ``arrays``: the reference on
    the reference path, else the first fast module whose ``supports(*arrays)`` is true, else the reference."""
    try:
        reference, fast = FAMILIES[family]
    except KeyError:
        raise ValueError(f"kernels: unknown kernel family {family!r}; known: {sorted(FAMILIES)}") from None
    if get_path() == "fast":
        for name in fast:
            candidate = module(name)
            if candidate.supports(*arrays):
                return candidate
    return module(reference)


def block_bytes(kernel_module):
    """Bytes of column matrix per block of samples for the ops of ``ops/conv.py`` (None: the whole batch).

    The conv kernel module's ``BLOCK_BYTES`` unless ``$MINIGRAD_CONV_BLOCK_BYTES`` is set (an integer; 0
    means the whole batch at once), which is how the benchmark compares block sizes.
    """
    text = os.environ.get("MINIGRAD_CONV_BLOCK_BYTES", "").strip()
    if not text:
        return kernel_module.BLOCK_BYTES
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise ValueError(f"kernels: $MINIGRAD_CONV_BLOCK_BYTES must be a non-negative integer, got {text!r}")
    return value or None
