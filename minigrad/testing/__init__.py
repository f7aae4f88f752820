"""Test support for minigrad: the gradient checker, Hypothesis strategies and the op registry.

* :mod:`minigrad.testing.gradcheck` - ``gradcheck`` (central differences, random upstream gradient).
* :mod:`minigrad.testing.strategies` - Hypothesis strategies for shapes and op inputs (needs the
  ``hypothesis`` package, a test dependency).
* :mod:`minigrad.testing.registry` - one ``OpSpec`` per public op, read by the tests.

Only ``gradcheck`` is imported here, so ``import minigrad.testing`` works without Hypothesis.
"""
from .gradcheck import GradcheckError, GradcheckReport, gradcheck, numerical_vjp

__all__ = ["gradcheck", "GradcheckError", "GradcheckReport", "numerical_vjp"]
