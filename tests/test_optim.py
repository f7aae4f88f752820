"""SGD (with momentum) and Adam: a few steps on a small least-squares problem match the update rules
computed by hand in NumPy (and torch.optim, when installed); state_dict round trips."""
import importlib.util

import numpy as np
import pytest

import minigrad as mg
from minigrad import optim

rng = np.random.default_rng(0)
X = rng.standard_normal((8, 4))
Y = rng.standard_normal((8, 3))
W0 = rng.standard_normal((3, 4))
B0 = rng.standard_normal(3)

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed: the comparison with torch.optim is optional")


def _loss(w, b):
    """mean((x W^T + b - y)^2) on minigrad tensors."""
    r = mg.tensor(X) @ w.T + b - mg.tensor(Y)
    return (r * r).mean()


def _grads_numpy(w, b):
    """The same loss's gradients, derived by hand: dL/dr = 2 r / r.size."""
    r = X @ w.T + b - Y
    dr = 2 * r / r.size
    return dr.T @ X, dr.sum(axis=0)


def _params(dtype=np.float64):
    return mg.tensor(W0, dtype=dtype, requires_grad=True), mg.tensor(B0, dtype=dtype, requires_grad=True)


def _run(opt, w, b, steps):
    for _ in range(steps):
        opt.zero_grad()
        _loss(w, b).backward()
        opt.step()


# ----------------------------------------------------------------------------- SGD


@pytest.mark.parametrize("momentum, weight_decay", [(0.0, 0.0), (0.9, 0.0), (0.5, 0.01)])
def test_sgd_matches_the_update_rule(momentum, weight_decay):
    lr, steps = 0.1, 4
    w, b = _params()
    _run(optim.SGD([w, b], lr=lr, momentum=momentum, weight_decay=weight_decay), w, b, steps)

    pw, pb = W0.copy(), B0.copy()
    bufs = [None, None]
    for _ in range(steps):
        grads = _grads_numpy(pw, pb)
        new = []
        for i, (p, g) in enumerate(zip((pw, pb), grads)):
            g = g + weight_decay * p
            if momentum:
                bufs[i] = g if bufs[i] is None else momentum * bufs[i] + g   # torch: no dampening
                g = bufs[i]
            new.append(p - lr * g)
        pw, pb = new
    np.testing.assert_allclose(w.numpy(), pw, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(b.numpy(), pb, rtol=1e-12, atol=1e-14)


def test_sgd_reduces_the_loss_and_keeps_float32():
    w, b = _params(np.float32)
    before = _loss(w, b).item()
    _run(optim.SGD([w, b], lr=0.05, momentum=0.9), w, b, 20)
    assert _loss(w, b).item() < 0.5 * before
    assert w.dtype == np.float32 and b.dtype == np.float32


# ----------------------------------------------------------------------------- Adam


@pytest.mark.parametrize("betas, weight_decay", [((0.9, 0.999), 0.0), ((0.5, 0.999), 0.0), ((0.8, 0.99), 0.1)])
def test_adam_matches_the_update_rule(betas, weight_decay):
    lr, eps, steps = 0.01, 1e-8, 5
    w, b = _params()
    _run(optim.Adam([w, b], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay), w, b, steps)

    b1, b2 = betas
    params = [W0.copy(), B0.copy()]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for t in range(1, steps + 1):
        grads = _grads_numpy(*params)
        for i, g in enumerate(grads):
            g = g + weight_decay * params[i]
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** t)
            v_hat = v[i] / (1 - b2 ** t)
            params[i] = params[i] - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(w.numpy(), params[0], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(b.numpy(), params[1], rtol=1e-10, atol=1e-13)


def test_adam_first_step_moves_each_weight_by_lr():
    """With bias correction, step 1 is lr * g / (|g| + eps): every weight moves by ~lr against its gradient."""
    w, b = _params()
    _loss(w, b).backward()
    g = w.grad.numpy().copy()
    optim.Adam([w, b], lr=0.01).step()
    np.testing.assert_allclose(W0 - w.numpy(), 0.01 * np.sign(g), rtol=1e-5)


def test_adam_keeps_float32():
    w, b = _params(np.float32)
    opt = optim.Adam([w, b], lr=0.01)
    _run(opt, w, b, 3)
    assert w.dtype == np.float32 and opt.state[0]["exp_avg"].dtype == np.float32


# ----------------------------------------------------------------------------- common behaviour


@pytest.mark.parametrize("make", [lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: optim.Adam(ps, lr=0.01, betas=(0.5, 0.999))],
                         ids=["sgd", "adam"])
def test_state_dict_round_trip_resumes_exactly(make):
    w, b = _params()
    opt = make([w, b])
    _run(opt, w, b, 3)
    state = opt.state_dict()
    saved_w, saved_b = w.numpy().copy(), b.numpy().copy()
    _run(opt, w, b, 2)

    w2, b2 = mg.tensor(saved_w, requires_grad=True), mg.tensor(saved_b, requires_grad=True)
    opt2 = make([w2, b2])
    opt2.load_state_dict(state)
    _run(opt2, w2, b2, 2)
    np.testing.assert_array_equal(w2.numpy(), w.numpy())
    np.testing.assert_array_equal(b2.numpy(), b.numpy())


def test_state_dict_holds_copies_and_plain_values():
    w, b = _params()
    opt = optim.Adam([w, b], lr=0.01)
    _run(opt, w, b, 2)
    state = opt.state_dict()
    assert state["state"][0]["step"] == 2
    assert isinstance(state["state"][0]["exp_avg"], np.ndarray)
    assert state["param_groups"][0]["lr"] == 0.01 and "params" not in state["param_groups"][0]
    state["state"][0]["exp_avg"][...] = 0     # editing the snapshot does not touch the optimizer
    assert np.any(opt.state[0]["exp_avg"] != 0)


def test_load_state_dict_checks_shapes_and_counts():
    w, b = _params()
    opt = optim.Adam([w, b])
    _run(opt, w, b, 1)
    state = opt.state_dict()
    other = optim.Adam([mg.tensor(np.ones((2, 2)), requires_grad=True)])
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(3, 4\), the parameter has \(2, 2\)"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="state for parameter 1 but the optimizer has 1 parameters"):
        optim.Adam([mg.tensor(np.ones((3, 4)), requires_grad=True)]).load_state_dict(state)


def test_learning_rate_can_be_changed_through_param_groups():
    w, b = _params()
    opt = optim.SGD([w, b], lr=0.1)
    opt.param_groups[0]["lr"] = 0.0
    _run(opt, w, b, 2)
    np.testing.assert_array_equal(w.numpy(), W0)


def test_parameters_without_gradient_are_skipped():
    w, b = _params()
    opt = optim.Adam([w, b], lr=0.1)
    (w * w).sum().backward()        # b gets no gradient
    opt.step()
    np.testing.assert_array_equal(b.numpy(), B0)
    assert not np.array_equal(w.numpy(), W0) and opt.state[1] == {}


def test_zero_grad_clears_gradients():
    w, b = _params()
    opt = optim.SGD([w, b], lr=0.1)
    _loss(w, b).backward()
    opt.zero_grad()
    assert w.grad is None and b.grad is None


def test_bad_hyper_parameters_and_parameters():
    with pytest.raises(ValueError, match="SGD: got an empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(TypeError, match="requires_grad=True"):
        optim.SGD([mg.tensor([1.0])], lr=0.1)
    with pytest.raises(ValueError, match="SGD: lr must be a non-negative number"):
        optim.SGD(list(_params()), lr=-1)
    with pytest.raises(ValueError, match="Adam: invalid hyper-parameters"):
        optim.Adam(list(_params()), betas=(1.0, 0.999))


# ----------------------------------------------------------------------------- PyTorch


@needs_torch
@pytest.mark.parametrize("name, kwargs", [("SGD", {"lr": 0.1}), ("SGD", {"lr": 0.1, "momentum": 0.9}),
                                          ("SGD", {"lr": 0.05, "momentum": 0.5, "weight_decay": 0.1}),
                                          ("Adam", {"lr": 0.01}), ("Adam", {"lr": 3e-4, "betas": (0.5, 0.999)}),
                                          ("Adam", {"lr": 0.01, "weight_decay": 0.05})])
def test_matches_torch_optim(name, kwargs):
    import torch

    w, b = _params()
    _run(getattr(optim, name)([w, b], **kwargs), w, b, 6)

    tw = torch.tensor(W0, requires_grad=True)
    tb = torch.tensor(B0, requires_grad=True)
    topt = getattr(torch.optim, name)([tw, tb], **kwargs)
    for _ in range(6):
        topt.zero_grad()
        r = torch.tensor(X) @ tw.T + tb - torch.tensor(Y)
        (r * r).mean().backward()
        topt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().numpy(), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(b.numpy(), tb.detach().numpy(), rtol=1e-10, atol=1e-13)
