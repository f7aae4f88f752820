"""The convolution kernels: numba (conv_cpu.py) and CUDA (conv_cuda.py) against the reference im2col (im2col.py),
the adjoint relation between im2col and col2im, and the switch that picks a kernel path.

The CUDA kernels run for real only in ``@pytest.mark.cuda`` tests. Their bodies are plain C, so one test
also compiles them with the host's C compiler and runs them on the CPU: that checks their index
arithmetic on every machine that has ``cc``, GPU or not.
"""
import ctypes
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels
from minigrad.kernels import conv_cpu as cpu, conv_cuda as cuda, im2col as ref
from minigrad.testing.entries_conv import conv_geometries, conv_problems


@st.composite
def unfold_cases(draw, dtype=None):
    """An image batch and a conv geometry that fits it, in float32 or float64."""
    g = draw(conv_geometries(max_batch=3, max_channels=4, max_kernel=4, max_side=9))
    dtype = dtype or draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal((g["n"], g["cin"], g["h"], g["w"])).astype(dtype)
    return x, (g["kernel"], g["stride"], g["padding"]), rng


# ------------------------------------------------------------------------------ numba vs reference
@given(unfold_cases())
def test_numba_im2col_equals_reference(case):
    x, geometry, _ = case
    expected = ref.im2col(x, *geometry)
    got = cpu.im2col(x, *geometry)
    assert got.shape == expected.shape and got.dtype == x.dtype
    np.testing.assert_array_equal(got, expected)  # a copy: exactly equal


@given(unfold_cases(), st.booleans())
def test_numba_col2im_equals_reference(case, with_bias):
    """Sums of up to kH*kW entries: equal to float rounding (the order of the additions may differ)."""
    x, geometry, rng = case
    cols = rng.standard_normal(ref.im2col(x, *geometry).shape).astype(x.dtype)
    bias = rng.standard_normal(x.shape[1]).astype(x.dtype) if with_bias else None
    expected = ref.col2im(cols, x.shape, *geometry, bias=bias)
    got = cpu.col2im(cols, x.shape, *geometry, bias=bias)
    assert got.shape == x.shape and got.dtype == x.dtype
    rtol = 1e-6 if x.dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * 10)


@given(unfold_cases(), st.booleans())
def test_numba_layout_moves_and_channel_sum_equal_reference(case, with_bias):
    x, _, rng = case
    n, c, h, w = x.shape
    rows = cpu.to_channel_rows(x)
    np.testing.assert_array_equal(rows, ref.to_channel_rows(x))
    bias = rng.standard_normal(c).astype(x.dtype) if with_bias else None
    np.testing.assert_array_equal(cpu.from_channel_rows(rows, n, h, w, bias),
                                  ref.from_channel_rows(rows, n, h, w, bias))
    if bias is None:
        np.testing.assert_array_equal(cpu.from_channel_rows(rows, n, h, w), x)
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cpu.channel_sum(x), ref.channel_sum(x), rtol=rtol, atol=rtol * x[0, 0].size * n)


def test_numba_kernels_accept_non_contiguous_input():
    x = np.random.default_rng(0).standard_normal((5, 3, 6, 4)).transpose(0, 1, 3, 2)
    geometry = ((3, 2), (2, 1), (1, 1))
    np.testing.assert_array_equal(cpu.im2col(x, *geometry), ref.im2col(x, *geometry))
    np.testing.assert_array_equal(cpu.to_channel_rows(x), ref.to_channel_rows(x))


def test_col2im_rejects_shapes_that_do_not_fit():
    """The numba kernel does not check its indices; the wrapper checks the shapes instead."""
    geometry = ((3, 3), (1, 1), (1, 1))
    with pytest.raises(ValueError, match=r"col2im: a column matrix of shape \(9, 10\) does not fit"):
        cpu.col2im(np.zeros((9, 10), np.float32), (1, 1, 4, 4), *geometry)
    with pytest.raises(ValueError, match="col2im: out must be a C-contiguous float32 array"):
        cpu.col2im(np.zeros((9, 16), np.float32), (1, 1, 4, 4), *geometry, out=np.zeros((1, 1, 4, 5), np.float32))


# ------------------------------------------------------------------------------ adjoint relation
@given(unfold_cases(dtype=np.float64), st.sampled_from(["numba", "reference"]))
def test_col2im_is_the_adjoint_of_im2col(case, which):
    """<im2col(x), C> == <x, col2im(C)>: what makes col2im the gradient of im2col."""
    x, geometry, rng = case
    k = cpu if which == "numba" else ref
    cols = k.im2col(x, *geometry)
    c_mat = rng.standard_normal(cols.shape)
    np.testing.assert_allclose(np.vdot(cols, c_mat), np.vdot(x, k.col2im(c_mat, x.shape, *geometry)),
                               rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------- path selection
def test_path_switch(monkeypatch):
    x = np.zeros((1, 1, 3, 3), np.float32)
    monkeypatch.delenv("MINIGRAD_KERNELS", raising=False)
    assert kernels.get_path() == "fast" and kernels.for_arrays("conv", x) is cpu
    monkeypatch.setenv("MINIGRAD_KERNELS", "reference")
    assert kernels.get_path() == "reference" and kernels.for_arrays("conv", x) is ref
    with kernels.use("fast"):
        assert kernels.for_arrays("conv", x) is cpu
    assert kernels.for_arrays("conv", x) is ref          # restored
    monkeypatch.setenv("MINIGRAD_KERNELS", "referense")
    with pytest.raises(ValueError, match=r"kernels: \$MINIGRAD_KERNELS must be one of \('fast', 'reference'\)"):
        kernels.get_path()
    with pytest.raises(ValueError, match="kernels: the kernel path must be one of"):
        kernels.set_path("numba")


def test_reference_path_is_what_the_op_runs(monkeypatch):
    """The op really goes through the module the switch names (a spy on the reference im2col)."""
    calls = []
    real = ref.im2col
    monkeypatch.setattr(ref, "im2col", lambda *a, **k: calls.append(1) or real(*a, **k))
    x, w = mg.randn(1, 2, 4, 4), mg.randn(3, 2, 3, 3)
    F.conv2d(x, w)
    assert not calls
    with kernels.use("reference"):
        F.conv2d(x, w)
    assert calls == [1]


# ------------------------------------------------- the CUDA kernel bodies, compiled as C on the host
C_HARNESS = r"""
#include <stddef.h>
typedef %(T)s T;
void im2col(const T *x, int n, int c, int h, int w, int kh, int kw, int sh, int sw, int ph, int pw,
            int oh, int ow, T *out, long long size) {
    for (long long i = 0; i < size; ++i) {
#define col out[i]
%(IM2COL)s
#undef col
    }
}
void col2im(const T *cols, const T *bias, int n, int c, int h, int w, int kh, int kw, int sh, int sw,
            int ph, int pw, int oh, int ow, T *out, long long size) {
    for (long long i = 0; i < size; ++i) {
#define img out[i]
%(COL2IM)s
#undef img
    }
}
"""


@pytest.fixture(scope="module")
def c_kernels(tmp_path_factory):
    """The CUDA kernel bodies compiled for the CPU, one library per dtype."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler (cc/gcc) to compile the CUDA kernel bodies for the CPU")
    libs = {}
    for ctype, dtype in (("float", np.float32), ("double", np.float64)):
        folder = tmp_path_factory.mktemp(ctype)
        src, lib = folder / "kernels.c", folder / "kernels.so"
        src.write_text(C_HARNESS % dict(T=ctype, IM2COL=cuda.IM2COL_BODY, COL2IM=cuda.COL2IM_BODY))
        subprocess.run([compiler, "-std=c99", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        libs[np.dtype(dtype)] = ctypes.CDLL(str(lib))
    return libs


def _c_call(lib, name, arrays, geometry, out):
    ptrs = [a.ctypes.data_as(ctypes.c_void_p) for a in arrays]
    ints = [ctypes.c_int(int(v)) for v in geometry]
    getattr(lib, name)(*ptrs, *ints, out.ctypes.data_as(ctypes.c_void_p), ctypes.c_longlong(out.size))


@given(unfold_cases(), st.booleans())
def test_cuda_kernel_bodies_compiled_as_c_match_reference(c_kernels, case, with_bias):
    x, (kernel, stride, padding), rng = case
    lib = c_kernels[x.dtype]
    geometry = cuda._geometry(x.shape, kernel, stride, padding)
    expected = ref.im2col(x, kernel, stride, padding)
    cols = np.empty_like(expected)
    _c_call(lib, "im2col", [np.ascontiguousarray(x)], geometry, cols)
    np.testing.assert_array_equal(cols, expected)

    g = rng.standard_normal(expected.shape).astype(x.dtype)
    bias = rng.standard_normal(x.shape[1]).astype(x.dtype) if with_bias else np.zeros(x.shape[1], x.dtype)
    img = np.empty_like(x)
    _c_call(lib, "col2im", [g, bias], geometry, img)
    rtol = 1e-6 if x.dtype == np.float32 else 1e-14
    np.testing.assert_allclose(img, ref.col2im(g, x.shape, kernel, stride, padding, bias=bias), rtol=rtol,
                               atol=rtol * 10)


# ------------------------------------------------------------------------------------------ CUDA
@pytest.mark.cuda
@given(unfold_cases(), st.booleans())
def test_cuda_kernels_equal_reference(case, with_bias):
    import cupy as cp

    x, geometry, rng = case
    xg = cp.asarray(x)
    expected = ref.im2col(x, *geometry)
    np.testing.assert_array_equal(cp.asnumpy(cuda.im2col(xg, *geometry)), expected)
    np.testing.assert_array_equal(cp.asnumpy(ref.im2col(xg, *geometry)), expected)  # the reference on CuPy
    g = rng.standard_normal(expected.shape).astype(x.dtype)
    bias = rng.standard_normal(x.shape[1]).astype(x.dtype) if with_bias else None
    want = ref.col2im(g, x.shape, *geometry, bias=bias)
    got = cuda.col2im(cp.asarray(g), x.shape, *geometry, bias=None if bias is None else cp.asarray(bias))
    rtol = 1e-5 if x.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cp.asnumpy(got), want, rtol=rtol, atol=rtol * 10)


@pytest.mark.cuda
@given(p=st.one_of(conv_problems(dtype=np.float32), conv_problems(transposed=True, dtype=np.float32)),
       path=st.sampled_from(["fast", "reference"]))
def test_cuda_op_matches_cpu(p, path):
    """Forward and gradients of the whole op on the GPU (CuPy kernels + cuBLAS) equal the CPU's."""
    arrays = [p["x"], p["weight"]] + ([p["bias"]] if p["bias"] is not None else [])
    results = {}
    for device in ("cpu", "cuda"):
        with kernels.use(path):
            ts = [mg.tensor(a, device=device, requires_grad=True) for a in arrays]
            b = ts[2] if len(ts) == 3 else None
            if p["transposed"]:
                y = F.conv_transpose2d(ts[0], ts[1], b, stride=p["stride"], padding=p["padding"],
                                       output_padding=p["output_padding"])
            else:
                y = F.conv2d(ts[0], ts[1], b, stride=p["stride"], padding=p["padding"])
            upstream = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
            y.backward(mg.tensor(upstream, device=device))
            assert y.device == device and all(t.grad.device == device for t in ts)
            results[device] = [y.numpy()] + [t.grad.numpy() for t in ts]
    for a, b in zip(results["cpu"], results["cuda"]):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(a).max())))


@pytest.mark.cuda
def test_cuda_layers_run_on_the_gpu():
    from minigrad import nn

    layer = nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1).to("cuda")
    y = layer(mg.randn(2, 8, 4, 4, device="cuda"))
    assert y.shape == (2, 4, 8, 8) and y.device == "cuda"
    y.sum().backward()
    assert layer.weight.grad.device == "cuda"
