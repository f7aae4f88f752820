"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d`` (PyTorch's parameters, names and initialisation).

Initialisation, as PyTorch's: the weight is drawn by ``kaiming_uniform_(a=sqrt(5))``, which works out to
U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and so is the bias. PyTorch takes ``fan_in`` from the weight's dim 1
times the kernel area, for both layers - so it is ``in_channels * kH * kW`` for Conv2d (weight
(Cout, Cin, kH, kW)) but ``out_channels * kH * kW`` for ConvTranspose2d (weight (Cin, Cout, kH, kW)).
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import functional as F
from ..creation import zeros
from ..ops.conv import pair
from . import init
from .module import Module, Parameter


def _check_channels(op, in_channels, out_channels):
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{op}: {name} must be a positive int, got {value!r}")


class _ConvNd(Module):
    """What both layers share: the arguments, the parameters and their initialisation."""

    op = ""

    def __init__(self, weight_shape, out_channels, kernel_size, stride, padding, bias, dtype, device):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = pair(stride, self.op, "stride", 1)
        self.padding = pair(padding, self.op, "padding", 0)
        self.weight = Parameter(zeros(*weight_shape, dtype=dtype, device=device))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if bias:
            fan_in = weight_shape[1] * kernel_size[0] * kernel_size[1]
            self.bias = Parameter(zeros(out_channels, dtype=dtype, device=device))
            init.default_bias_(self.bias, fan_in)
        else:
            self.bias = None

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}" + ("" if self.bias is not None else ", bias=False"))


class Conv2d(_ConvNd):
    """2-D convolution layer: ``y = F.conv2d(x, weight, bias, stride, padding)``, weight of shape
    (out_channels, in_channels, kH, kW), bias (out_channels,). ``kernel_size``, ``stride`` and ``padding``
    are ints or (height, width) pairs."""

    op = "Conv2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True,
                 dtype=np.float32, device="cpu"):
        kernel = pair(kernel_size, self.op, "kernel_size", 1)
        _check_channels(self.op, in_channels, out_channels)
        super().__init__((out_channels, in_channels) + kernel, out_channels, kernel, stride, padding, bias, dtype,
                         device)
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding)


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution layer: ``y = F.conv_transpose2d(x, weight, bias, stride, padding,
    output_padding)``, weight of shape (in_channels, out_channels, kH, kW), bias (out_channels,).
    ``output_padding`` (< stride) adds that many rows/columns to one side of the output, e.g. a 5x5 kernel
    with stride 2, padding 2 and output_padding 1 exactly doubles the height and width."""

    op = "ConvTranspose2d"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, bias=True,
                 dtype=np.float32, device="cpu"):
        kernel = pair(kernel_size, self.op, "kernel_size", 1)
        _check_channels(self.op, in_channels, out_channels)
        super().__init__((in_channels, out_channels) + kernel, out_channels, kernel, stride, padding, bias, dtype,
                         device)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.output_padding = pair(output_padding, self.op, "output_padding", 0)
        if self.output_padding[0] >= self.stride[0] or self.output_padding[1] >= self.stride[1]:
            raise ValueError(f"{self.op}: output_padding {self.output_padding} must be smaller than stride "
                             f"{self.stride} in each dimension")

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                                  output_padding=self.output_padding)

    def extra_repr(self):
        text = super().extra_repr()
        return text if self.output_padding == (0, 0) else text + f", output_padding={self.output_padding}"
