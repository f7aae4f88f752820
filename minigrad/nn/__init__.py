"""Layers and models: ``from minigrad import nn``."""
from . import init
from .conv import Conv2d, ConvTranspose2d
from .layers import Identity, LeakyReLU, Linear, ReLU, Sequential, Tanh
from .module import Module, Parameter
from .norm import BatchNorm1d, BatchNorm2d
from .dropout import Dropout, GaussianNoise
from . import utils

__all__ = ["Module", "Parameter", "Linear", "LeakyReLU", "ReLU", "Tanh", "Identity", "Sequential", "init",
           "BatchNorm1d", "BatchNorm2d", "Dropout", "GaussianNoise", "utils", "Conv2d", "ConvTranspose2d"]
