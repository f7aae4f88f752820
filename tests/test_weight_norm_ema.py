"""The pieces behind Improved-GAN's MNIST models: weight normalization (``nn.utils``), Gaussian noise,
shift-only batch norm (``scale=False``), the averaged model (``AveragedModel``) and Adam with eps under the
square root. ``F.weight_norm`` and ``F.gaussian_noise`` also have registry entries (values, gradients,
PyTorch); these tests check the layers and utilities built on them.
"""
from __future__ import annotations

import numpy as np
import pytest

import minigrad as mg
import minigrad.functional as F
from minigrad import kernels, nn, optim
from minigrad.testing import GradcheckError, gradcheck

# ------------------------------------------------------------------------------------------- weight norm


def _layers():
    mg.manual_seed(0)
    return {
        "linear": (nn.Linear(4, 3), 0, (5, 4), (3, 1)),
        "conv2d": (nn.Conv2d(2, 3, 3, padding=1), 0, (2, 2, 5, 5), (3, 1, 1, 1)),
        "conv_transpose2d": (nn.ConvTranspose2d(2, 3, 3, stride=2), 1, (2, 2, 3, 3), (1, 3, 1, 1)),
    }


@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv_transpose2d"])
def test_weight_norm_keeps_the_function_and_uses_pytorchs_names(kind):
    layer, dim, x_shape, g_shape = _layers()[kind]
    x = mg.tensor(np.random.default_rng(1).standard_normal(x_shape).astype(np.float32))
    w = layer.weight.numpy().copy()
    before = layer(x).numpy()
    assert nn.utils.weight_norm(layer, dim=dim) is layer
    np.testing.assert_allclose(layer(x).numpy(), before, rtol=1e-5, atol=1e-6)
    assert list(layer.state_dict()) == ["bias", "weight_g", "weight_v"]  # torch.nn.utils.weight_norm's order
    assert layer.weight_g.shape == g_shape and layer.weight_v.shape == w.shape
    np.testing.assert_array_equal(layer.weight_v.numpy(), w)
    axes = tuple(a for a in range(w.ndim) if a != dim)
    np.testing.assert_allclose(layer.weight_g.numpy(), np.sqrt((w.astype(np.float64) ** 2).sum(axes, keepdims=True)),
                               rtol=1e-6)
    assert {n for n, _ in layer.named_parameters()} == {"bias", "weight_g", "weight_v"}
    with pytest.raises(RuntimeError, match="already weight-normalised"):
        nn.utils.weight_norm(layer, dim=dim)


@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv_transpose2d"])
def test_weight_normed_layer_gradients_pass_gradcheck(kind):
    layer, dim, x_shape, _ = _layers()[kind]
    nn.utils.weight_norm(layer, dim=dim)
    rng = np.random.default_rng(2)
    x = mg.tensor(rng.standard_normal(x_shape))
    layer.bias.data = layer.bias.data.astype(np.float64)

    def fn(g, v):
        layer._parameters.update(weight_g=g, weight_v=v)   # the hook reads the module's own parameters
        return layer(x)

    g0 = layer.weight_g.numpy().astype(np.float64) * rng.uniform(0.5, 2.0, layer.weight_g.shape)
    v0 = layer.weight_v.numpy().astype(np.float64)
    report = gradcheck(fn, [g0, v0], directions=True, names=["weight_g", "weight_v"])
    assert report.ok and [c.index for c in report.inputs] == [0, 1]


def test_weight_norm_gradcheck_negative_control():
    """A weight-normed layer whose hook forgets to differentiate through the norm fails the check."""
    layer = nn.Linear(3, 2, dtype=np.float64)
    nn.utils.weight_norm(layer)
    x = mg.tensor(np.random.default_rng(3).standard_normal((4, 3)))

    def wrong(g, v):  # the norm as a constant: misses the norm's dependence on v
        norm = mg.tensor(np.sqrt((v.numpy() ** 2).sum(1, keepdims=True)))
        return F.linear(x, v * (g / norm), layer.bias)

    with pytest.raises(GradcheckError):
        gradcheck(wrong, [layer.weight_g.numpy(), layer.weight_v.numpy()])


@pytest.mark.parametrize("kind", ["linear", "conv2d", "conv_transpose2d"])
def test_remove_weight_norm_restores_one_parameter(kind):
    layer, dim, x_shape, _ = _layers()[kind]
    x = mg.tensor(np.random.default_rng(4).standard_normal(x_shape).astype(np.float32))
    nn.utils.weight_norm(layer, dim=dim)
    layer.weight_g.data = layer.weight_g.data * 1.5       # a trained length
    normed = layer(x).numpy()
    w = layer.weight.numpy().copy()
    assert nn.utils.remove_weight_norm(layer) is layer
    assert list(layer.state_dict()) == ["bias", "weight"]
    assert isinstance(layer.weight, nn.Parameter) and layer.weight.requires_grad
    np.testing.assert_array_equal(layer.weight.numpy(), w)
    np.testing.assert_array_equal(layer(x).numpy(), normed)
    assert not layer._forward_pre_hooks
    with pytest.raises(ValueError, match="is not weight-normalised"):
        nn.utils.remove_weight_norm(layer)


def test_weight_norm_refuses_bad_arguments():
    with pytest.raises(ValueError, match="has no parameter 'kernel'"):
        nn.utils.weight_norm(nn.Linear(2, 2), name="kernel")
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        nn.utils.weight_norm(nn.Linear(2, 2), dim=2)
    with pytest.raises(TypeError, match="expected a Module"):
        nn.utils.weight_norm("linear")


@pytest.mark.parametrize("init_scale", [1.0, 0.1])
@pytest.mark.parametrize("kind", ["linear", "conv2d"])
def test_data_dependent_init_standardises_each_channel(kind, init_scale):
    layer, dim, x_shape, _ = _layers()[kind]
    nn.utils.weight_norm(layer, dim=dim)
    rng = np.random.default_rng(5)
    x = mg.tensor((rng.standard_normal((64,) + x_shape[1:]) * 3.0 + 1.0).astype(np.float32))
    returned = nn.utils.weight_norm_data_init_(layer, x, init_scale=init_scale)
    y = layer(x).numpy().astype(np.float64)
    axes = (0,) if y.ndim == 2 else (0, 2, 3)
    np.testing.assert_allclose(y.mean(axis=axes), 0.0, atol=1e-5 * init_scale + 1e-6)
    np.testing.assert_allclose(y.std(axis=axes), init_scale, rtol=1e-4)
    np.testing.assert_allclose(returned.numpy(), y, rtol=1e-4, atol=1e-5 * init_scale)
    assert returned.grad_fn is None


def test_data_dependent_init_needs_a_weight_normed_layer_with_a_bias():
    x = mg.tensor(np.ones((4, 3), np.float32))
    with pytest.raises(ValueError, match="not weight-normalised"):
        nn.utils.weight_norm_data_init_(nn.Linear(3, 2), x)
    with pytest.raises(ValueError, match="needs a bias"):
        nn.utils.weight_norm_data_init_(nn.utils.weight_norm(nn.Linear(3, 2, bias=False)), x)


# ------------------------------------------------------------------------------------------- noise


def test_gaussian_noise_is_the_identity_in_evaluation_mode():
    layer = nn.GaussianNoise(0.5).eval()
    x = mg.tensor(np.arange(6.0, dtype=np.float32), requires_grad=True)
    assert layer(x) is x
    assert nn.GaussianNoise(0.0)(x) is x            # std 0: nothing to add, even while training


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gaussian_noise_statistics_and_gradient(dtype):
    mg.manual_seed(11)
    n, std = 200_000, 0.5
    x = mg.tensor(np.full(n, 3.0, dtype=dtype), requires_grad=True)
    y = nn.GaussianNoise(std)(x)
    assert y.dtype == dtype and y.shape == (n,)
    noise = y.numpy().astype(np.float64) - 3.0
    assert abs(noise.mean()) < 4 * std / np.sqrt(n)
    assert abs(noise.std() / std - 1.0) < 0.01
    y.backward(np.full(n, 2.0, dtype=dtype))
    np.testing.assert_array_equal(x.grad.numpy(), np.full(n, 2.0, dtype=dtype))   # d(x + noise)/dx = 1


def test_gaussian_noise_is_seeded():
    x = mg.zeros(50)
    mg.manual_seed(7)
    a = F.gaussian_noise(x, 1.0).numpy()
    b = F.gaussian_noise(x, 1.0).numpy()
    mg.manual_seed(7)
    np.testing.assert_array_equal(F.gaussian_noise(x, 1.0).numpy(), a)
    assert not np.array_equal(a, b)                 # a fresh draw on every call


def test_gaussian_noise_refuses_bad_arguments():
    for std in (-0.1, float("inf"), float("nan"), True, "0.5"):
        with pytest.raises(ValueError, match="std must be a finite number >= 0"):
            nn.GaussianNoise(std)
        with pytest.raises(ValueError, match="gaussian_noise: std must be a finite number >= 0"):
            F.gaussian_noise(mg.zeros(2), std)
    with pytest.raises(TypeError, match="gaussian_noise: input must be floating point"):
        F.gaussian_noise(mg.tensor([1, 2]), 0.5)


# ------------------------------------------------------------------------------------------- batch norm


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm2d, (4, 3, 2, 2))])
def test_batch_norm_without_scale_is_affine_batch_norm_with_weight_one(cls, shape):
    shift_only = cls(3, scale=False, dtype=np.float64)
    affine = cls(3, dtype=np.float64)
    assert [n for n, _ in shift_only.named_parameters()] == ["bias"]
    assert list(shift_only.state_dict()) == ["bias", "running_mean", "running_var", "num_batches_tracked"]
    assert "scale=False" in repr(shift_only)
    bias = np.array([0.5, -1.0, 2.0])
    shift_only.bias.data = bias.copy()
    affine.bias.data = bias.copy()
    rng = np.random.default_rng(6)
    for training in (True, False):
        shift_only.train(training)
        affine.train(training)
        x = rng.standard_normal(shape) * 2 + 1
        g = rng.standard_normal(shape)
        outs = []
        for layer in (shift_only, affine):
            t = mg.tensor(x, requires_grad=True)
            y = layer(t)
            y.backward(g)
            outs.append((y.numpy(), t.grad.numpy(), layer.bias.grad.numpy()))
            layer.zero_grad()
        for a, b in zip(*outs):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(shift_only.running_mean.numpy(), affine.running_mean.numpy())
        np.testing.assert_array_equal(shift_only.running_var.numpy(), affine.running_var.numpy())


# ------------------------------------------------------------------------------------------- averaging


def _model():
    mg.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    model[0].bias.requires_grad = False            # a frozen parameter: copied, not averaged
    return model


def _train_step(model, rng):
    """Change the trained parameters, the frozen one and the buffers, as training would."""
    model[0].weight.data = rng.standard_normal((2, 3)).astype(np.float32)
    model[0].bias.data = rng.standard_normal(2).astype(np.float32)
    model[1].weight.data = rng.standard_normal(2).astype(np.float32)
    model[1].bias.data = rng.standard_normal(2).astype(np.float32)
    model.train()
    model(mg.tensor(rng.standard_normal((8, 3)).astype(np.float32)))   # running statistics move


@pytest.mark.parametrize("start", ["copy", "zeros"])
def test_averaged_model_follows_the_ema_rule(start):
    model, rng, decay = _model(), np.random.default_rng(8), 0.75
    ema = mg.AveragedModel(model, decay=decay, start=start)
    averaged = ["0.weight", "1.weight", "1.bias"]
    expected = {k: (np.zeros_like(v) if start == "zeros" else v.copy())
                for k, v in model.state_dict().items() if k in averaged}
    for step in range(1, 4):
        _train_step(model, rng)
        ema.update_parameters(model)
        current = model.state_dict()
        for k in averaged:
            if start == "copy" and step == 1:
                expected[k] = current[k].copy()
            else:
                expected[k] = expected[k] + np.float32(1 - decay) * (current[k] - expected[k])
        mine = ema.module.state_dict()
        for k in averaged:
            np.testing.assert_allclose(mine[k], expected[k], rtol=1e-6, atol=1e-7, err_msg=f"{k} at step {step}")
        for k in ("0.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked"):
            np.testing.assert_array_equal(mine[k], current[k], err_msg=f"{k} is copied at step {step}")
        assert int(ema.n_averaged.item()) == step
    x = mg.tensor(rng.standard_normal((4, 3)).astype(np.float32))
    ema.eval()
    np.testing.assert_array_equal(ema(x).numpy(), ema.module(x).numpy())
    assert all(p.grad is None for p in ema.module.parameters())


def test_averaged_model_state_dict_names_and_round_trip():
    model, rng = _model(), np.random.default_rng(9)
    ema = mg.AveragedModel(model, decay=0.5)
    for _ in range(2):
        _train_step(model, rng)
        ema.update_parameters(model)
    state = ema.state_dict()
    assert list(state) == ["n_averaged"] + [f"module.{k}" for k in model.state_dict()]
    assert state["n_averaged"] == 2 and state["n_averaged"].dtype == np.int64

    other = mg.AveragedModel(_model(), decay=0.5)
    other.load_state_dict(state)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, state[k], err_msg=k)
    _train_step(model, rng)           # both continue alike: the restored one does not "copy" again
    ema.update_parameters(model)
    other.update_parameters(model)
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(v, ema.state_dict()[k], err_msg=k)


def test_averaged_model_of_a_weight_normed_layer_computes_from_its_own_copy():
    layer = nn.utils.weight_norm(nn.Linear(3, 2))
    ema = mg.AveragedModel(layer, decay=0.9)
    layer.weight_g.data = layer.weight_g.data * 2.0
    x = mg.tensor(np.ones((1, 3), np.float32))
    assert not np.allclose(ema(x).numpy(), layer(x).numpy())
    ema.update_parameters(layer)      # first update: a copy
    np.testing.assert_array_equal(ema(x).numpy(), layer(x).numpy())


def test_averaged_model_refuses_bad_arguments():
    model = nn.Linear(2, 2)
    for decay in (1.0, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match=r"decay must be a number in \[0, 1\)"):
            mg.AveragedModel(model, decay=decay)
    with pytest.raises(ValueError, match="start must be one of"):
        mg.AveragedModel(model, start="ones")
    with pytest.raises(TypeError, match="model must be a Module"):
        mg.AveragedModel("model")
    with pytest.raises(ValueError, match="do not match"):
        mg.AveragedModel(model).update_parameters(nn.Linear(2, 2, bias=False))


# ------------------------------------------------------------------------------------------- Adam


def _adam_inside_run(path, dtype, steps=4):
    rng = np.random.default_rng(10)
    w = mg.tensor(rng.standard_normal((5, 7)).astype(dtype), requires_grad=True)
    grads = [rng.standard_normal((5, 7)).astype(dtype) for _ in range(steps)]
    with kernels.use(path):
        opt = optim.Adam([w], lr=0.01, betas=(0.5, 0.999), eps=1e-4, eps_inside_sqrt=True)
        for g in grads:
            w.grad = mg.tensor(g)
            opt.step()
    return w.numpy(), opt.state_dict(), grads


def _by_hand(p, grads, lr, beta1, beta2, eps, dtype):
    """The update written out in the parameter's dtype, in the order minigrad computes it:
    step_size = lr / (1 - beta1^t), p - step_size * m / sqrt(v / (1 - beta2^t) + eps)."""
    dt = np.dtype(dtype).type
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    for t, g in enumerate(grads, start=1):
        m = dt(beta1) * m + dt(1 - beta1) * g
        v = dt(beta2) * v + dt(1 - beta2) * (g * g)
        p = p - dt(lr / (1 - beta1 ** t)) * m / np.sqrt(v / dt(1 - beta2 ** t) + dt(eps))
    return p, m, v


def _theano_style(p, grads, lr, beta1, beta2, eps):
    """Improved-GAN's Theano ``adam_updates``, in float64: bias-corrected moments, then
    p - lr * m_hat / sqrt(v_hat + eps)."""
    p, m, v = p.astype(np.float64), np.zeros(p.shape), np.zeros(p.shape)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g ** 2
        m_hat, v_hat = m / (1 - beta1 ** t), v / (1 - beta2 ** t)
        p = p - lr * m_hat / np.sqrt(v_hat + eps)
    return p


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adam_eps_inside_sqrt_kernel_numpy_and_hand_written_agree(dtype):
    fast, fast_state, grads = _adam_inside_run("fast", dtype)
    ref, ref_state, _ = _adam_inside_run("reference", dtype)
    np.testing.assert_array_equal(fast, ref)
    for key in ("exp_avg", "exp_avg_sq"):
        np.testing.assert_array_equal(fast_state["state"][0][key], ref_state["state"][0][key])
    assert fast_state["param_groups"][0]["eps_inside_sqrt"] is True

    p0 = np.random.default_rng(10).standard_normal((5, 7)).astype(dtype)
    hand, m, v = _by_hand(p0, grads, 0.01, 0.5, 0.999, 1e-4, dtype)
    assert fast.dtype == dtype
    np.testing.assert_array_equal(fast, hand)
    np.testing.assert_array_equal(fast_state["state"][0]["exp_avg"], m)
    np.testing.assert_array_equal(fast_state["state"][0]["exp_avg_sq"], v)

    theano = _theano_style(p0, grads, 0.01, 0.5, 0.999, 1e-4)
    np.testing.assert_allclose(fast, theano, rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-7)


def test_adam_eps_inside_sqrt_differs_from_the_default_rule():
    # with eps = 1e-2 inside the root, the first step is lr * g / sqrt(g^2 + eps) instead of lr * sign(g)
    for inside in (False, True):
        w = mg.tensor(np.zeros(3), requires_grad=True)
        opt = optim.Adam([w], lr=1.0, eps=1e-2, eps_inside_sqrt=inside)
        w.grad = mg.tensor(np.array([0.1, -1.0, 3.0]))
        opt.step()
        g = np.array([0.1, -1.0, 3.0])
        expected = -g / np.sqrt(g * g + 1e-2) if inside else -g / (np.abs(g) + 1e-2)
        np.testing.assert_allclose(w.numpy(), expected, rtol=1e-12)
