"""The ops: one module per family, each op a :class:`~minigrad.autograd.Function` with its forward and
backward side by side. ``minigrad.functional`` and ``Tensor``'s methods are the user-facing entry points."""
