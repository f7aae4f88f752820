"""Layers and models: ``from minigrad import nn``."""
from . import init
from .layers import Identity, LeakyReLU, Linear, ReLU, Sequential, Tanh
from .module import Module, Parameter

__all__ = ["Module", "Parameter", "Linear", "LeakyReLU", "ReLU", "Tanh", "Identity", "Sequential", "init"]
