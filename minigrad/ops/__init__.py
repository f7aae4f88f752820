"""The ops: one module per family, each op a :class:`~minigrad.autograd.Function` with its forward and
backward side by side. ``minigrad.functional`` and ``Tensor``'s methods are the user-facing entry points.

Each ``ops/<family>.py`` has its registry entries in ``minigrad/testing/entries_<family>.py`` and names that
file in its docstring. Where an op has fast kernels, it reaches them through ``kernels.for_arrays(family,
*arrays)`` only: the op holds the math, the kernel module the speed (``minigrad/kernels/__init__.py``)."""
