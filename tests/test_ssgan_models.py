"""ssgan.models: shapes, where batch norm takes its statistics from, and model-level gradient checks of one
discriminator loss and one generator loss (float64, tiny widths, random directions)."""
import contextlib

import numpy as np
import pytest

import minigrad as mg
from minigrad.testing import gradcheck
from ssgan import losses
from ssgan.models import Discriminator, Generator


def test_shapes_and_parameter_counts():
    mg.manual_seed(0)
    G, D = Generator(z_dim=8, width=4, out_channels=3), Discriminator(in_channels=3, width=4)
    fake = G(mg.rand(5, 8) * 2 - 1)
    assert fake.shape == (5, 3, 32, 32)
    assert float(np.abs(fake.numpy()).max()) <= 1.0
    logits, features = D(fake)
    assert logits.shape == (5, 10) and features.shape == (5, 8) and D.num_features == 8
    # the notebook's widths: 128 pooled features, ~0.45M parameters in each network for SVHN
    big = Discriminator(3, 64)
    assert big.fc.weight.shape == (10, 128)
    assert Generator(100, 32, 3).fc.weight.shape == (4 * 4 * 128, 100)
    with pytest.raises(ValueError, match="Discriminator: x must have shape"):
        D(mg.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="Generator: z must have shape"):
        G(mg.zeros(2, 7))


def _running(D):
    return {k: v.copy() for k, v in D.state_dict().items() if "running" in k}


def test_generated_batches_leave_the_running_statistics_alone():
    mg.manual_seed(1)
    D = Discriminator(1, 4)
    before = _running(D)
    D(mg.randn(6, 1, 32, 32), real=False)
    after_fake = _running(D)
    assert all(np.array_equal(before[k], after_fake[k]) for k in before)
    D(mg.randn(6, 1, 32, 32), real=True)
    after_real = _running(D)
    assert all(not np.array_equal(before[k], after_real[k]) for k in before)
    assert int(D.bn2.num_batches_tracked.item()) == 1


def test_eval_mode_uses_running_statistics_and_the_notebook_preset_does_not():
    mg.manual_seed(2)
    x = mg.randn(4, 1, 32, 32)
    for notebook, per_example in ((False, True), (True, False)):
        D = Discriminator(1, 4, notebook=notebook, drop_rate=0.5).eval()
        with mg.no_grad():
            whole = D(x)[0].numpy()
            alone = D(x[:1])[0].numpy()
        # running statistics: an example's logits do not depend on the rest of the batch;
        # batch statistics (the notebook's batch norm): they do
        assert np.allclose(whole[:1], alone, atol=1e-5) == per_example


def test_dropout_only_in_training_mode():
    mg.manual_seed(3)
    D = Discriminator(1, 4, drop_rate=0.5)
    x = mg.randn(3, 1, 32, 32)
    a, b = D(x)[0].numpy(), D(x)[0].numpy()
    assert not np.allclose(a, b)      # new dropout masks (and the same batch statistics) each call
    D.eval()
    with mg.no_grad():
        np.testing.assert_array_equal(D(x)[0].numpy(), D(x)[0].numpy())


@contextlib.contextmanager
def _parameters_replaced(module, tensors):
    """Put ``tensors`` in place of ``module``'s parameters (same order as ``named_parameters``)."""
    named = list(module.named_parameters())
    saved = []
    for (name, _), t in zip(named, tensors):
        owner = module
        path, _, attr = name.rpartition(".")
        for part in path.split(".") if path else ():
            owner = getattr(owner, part)
        saved.append((owner, attr, owner._parameters[attr]))
        owner._parameters[attr] = t
    try:
        yield
    finally:
        for owner, attr, p in saved:
            owner._parameters[attr] = p


def _tiny_models():
    mg.manual_seed(4)
    G = Generator(z_dim=6, width=2, out_channels=1)
    D = Discriminator(in_channels=1, width=3, drop_rate=0.5)  # dropout on: the checker fixes its masks
    for t in list(G.parameters()) + list(G.buffers()) + list(D.parameters()) + list(D.buffers()):
        if t.dtype.kind == "f":
            t.data = t.data.astype(np.float64)  # float64 all the way through
    return G, D


def _params64(module):
    return [p.numpy().astype(np.float64) for p in module.parameters()]


def test_gradcheck_discriminator_loss_wrt_its_parameters():
    G, D = _tiny_models()
    rng = np.random.default_rng(5)
    x_lab, x_unl = rng.uniform(-1, 1, (4, 1, 32, 32)), rng.uniform(-1, 1, (4, 1, 32, 32))
    fake = rng.uniform(-1, 1, (4, 1, 32, 32))
    y = np.array([0, 3, 5, 9])
    n_params = len(list(D.parameters()))

    def d_loss(*params):
        with _parameters_replaced(D, params):
            logits_real, _ = D(mg.cat([mg.tensor(x_lab), mg.tensor(x_unl)]), real=True)
            logits_fake, _ = D(mg.tensor(fake), real=False)
            return losses.discriminator_loss(logits_real[:4], y, logits_real[4:], logits_fake).total

    report = gradcheck(d_loss, _params64(D), directions=True, n_directions=3, seed=0,
                       names=[n for n, _ in D.named_parameters()])
    assert len(report.inputs) == n_params and report.ok


def test_gradcheck_generator_feature_matching_loss_wrt_generator_and_noise():
    G, D = _tiny_models()
    rng = np.random.default_rng(6)
    x_real = rng.uniform(-1, 1, (5, 1, 32, 32))
    z = rng.uniform(-1, 1, (5, 6))
    with mg.no_grad():
        _, f_real = D(mg.tensor(x_real), real=True)
    f_real = mg.tensor(f_real.numpy().astype(np.float64))

    def g_loss(z_t, *params):
        with _parameters_replaced(G, params):
            _, f_fake = D(G(z_t), real=False)
            return losses.feature_matching_loss(f_real, f_fake)

    report = gradcheck(g_loss, [z] + _params64(G), directions=True, n_directions=3, seed=1,
                       names=["z"] + [n for n, _ in G.named_parameters()])
    assert report.ok and len(report.inputs) == 1 + len(list(G.parameters()))


def test_gradcheck_catches_a_wrong_gradient_here_too():
    # negative control for the model-level check: scale the feature-matching gradient by 1.1
    G, D = _tiny_models()
    rng = np.random.default_rng(7)
    f_real = mg.tensor(rng.normal(size=(3, 6)))
    z = rng.uniform(-1, 1, (3, 6))

    class Scale(mg.Function):
        @staticmethod
        def forward(ctx, x):
            return x.copy()

        @staticmethod
        def backward(ctx, grad):
            return grad * 1.1

    def g_loss(z_t):
        _, f_fake = D(G(z_t), real=False)
        return losses.feature_matching_loss(f_real, Scale.apply(f_fake))

    with pytest.raises(AssertionError):
        gradcheck(g_loss, [z], directions=True, n_directions=3, seed=2)
