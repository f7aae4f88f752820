"""nn basics: Module registration and traversal, PyTorch-named parameters and state_dict keys,
load_state_dict's checks, train/eval, Linear's initialisation, Sequential, init functions."""
import importlib.util
import math

import numpy as np
import pytest

import minigrad as mg
from minigrad import nn, optim

needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch is not installed: the comparison with torch.nn is optional")


class Net(nn.Module):
    """A parameter of its own, a buffer, a layer, an activation and a nested Sequential."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(mg.ones(3))
        self.register_buffer("steps", mg.zeros(1))
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.LeakyReLU(0.2)
        self.blocks = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Sequential(nn.Linear(5, 2)))

    def forward(self, x):
        return self.blocks(self.act(self.fc1(x)) * self.scale)


EXPECTED_PARAMETERS = ["scale", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias",
                       "blocks.2.0.weight", "blocks.2.0.bias"]
# PyTorch's state_dict order: module by module, each module's parameters then its buffers.
EXPECTED_STATE = ["scale", "steps", "fc1.weight", "fc1.bias", "blocks.0.weight", "blocks.0.bias",
                  "blocks.2.0.weight", "blocks.2.0.bias"]


# ----------------------------------------------------------------------------- registration and names


def test_parameters_buffers_and_modules_are_registered_by_attribute_name():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == EXPECTED_PARAMETERS
    assert [n for n, _ in net.named_buffers()] == ["steps"]
    assert list(net.state_dict()) == EXPECTED_STATE
    assert [n for n, _ in net.named_modules()] == ["", "fc1", "act", "blocks", "blocks.0", "blocks.1", "blocks.2",
                                                   "blocks.2.0"]
    assert [type(m).__name__ for m in net.children()] == ["Linear", "LeakyReLU", "Sequential"]
    assert all(p.requires_grad for p in net.parameters())
    assert net.fc1.weight.shape == (3, 4) and net.fc1.bias.shape == (3,)


@needs_torch
def test_names_match_the_same_model_in_pytorch():
    import torch

    class TorchNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(3))
            self.register_buffer("steps", torch.zeros(1))
            self.fc1 = torch.nn.Linear(4, 3)
            self.act = torch.nn.LeakyReLU(0.2)
            self.blocks = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(),
                                              torch.nn.Sequential(torch.nn.Linear(5, 2)))

    tnet = TorchNet()
    assert [n for n, _ in tnet.named_parameters()] == EXPECTED_PARAMETERS
    assert list(tnet.state_dict()) == EXPECTED_STATE
    assert {k: tuple(v.shape) for k, v in tnet.state_dict().items()} == \
        {k: v.shape for k, v in Net().state_dict().items()}


@needs_torch
def test_a_pytorch_state_dict_loads_and_gives_the_same_outputs():
    import torch

    tmodel = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.LeakyReLU(0.2), torch.nn.Linear(6, 2)).double()
    model = nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.LeakyReLU(0.2), nn.Linear(6, 2, dtype=np.float64))
    model.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((5, 4))
    np.testing.assert_allclose(model(mg.tensor(x)).numpy(), tmodel(torch.tensor(x)).detach().numpy(), rtol=1e-12)


def test_a_parameter_assigned_after_a_plain_value_is_registered_and_visible():
    m = nn.Module()
    m.bias = None
    m.bias = nn.Parameter(mg.zeros(2))
    assert m.bias is not None and m.bias.shape == (2,)
    assert [n for n, _ in m.named_parameters()] == ["bias"]
    m.bias = None                             # and back: no longer a parameter
    assert m.bias is None and list(m.parameters()) == []


def test_deleting_an_attribute_unregisters_it():
    net = Net()
    del net.scale
    assert "scale" not in dict(net.named_parameters())
    with pytest.raises(AttributeError, match="'Net' object has no attribute 'scale'"):
        net.scale


def test_a_shared_parameter_is_listed_once():
    shared = nn.Linear(3, 3)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]


def test_assigning_before_super_init_is_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"Broken: call super\(\).__init__\(\)"):
        Broken()


def test_parameter_is_a_tensor_that_requires_grad():
    p = nn.Parameter(mg.tensor([1.0, 2.0]))
    assert isinstance(p, mg.Tensor) and p.requires_grad and p.is_leaf
    assert "Parameter containing" in repr(p)
    assert not nn.Parameter(mg.zeros(2), requires_grad=False).requires_grad


# ----------------------------------------------------------------------------- state_dict


def test_state_dict_values_are_copies():
    net = Net()
    state = net.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    state["fc1.weight"][...] = 123.0
    assert not np.any(net.fc1.weight.numpy() == 123.0)


def test_load_state_dict_round_trip():
    mg.manual_seed(1)
    a = Net()
    mg.manual_seed(2)
    b = Net()
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 4)), dtype=np.float32)
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    weight = b.fc1.weight
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    assert b.fc1.weight is weight             # loaded in place: an optimizer made before still holds it


def test_load_state_dict_reports_missing_unexpected_and_mis_shaped_keys_and_changes_nothing():
    net = Net()
    before = net.state_dict()
    state = net.state_dict()
    del state["blocks.2.0.bias"]
    state["extra.weight"] = np.zeros(3)
    state["fc1.weight"] = np.zeros((5, 4))
    with pytest.raises(ValueError) as info:
        net.load_state_dict(state)
    message = str(info.value)
    assert "load_state_dict for Net" in message
    assert "missing keys: blocks.2.0.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "fc1.weight: checkpoint (5, 4) vs model (3, 4)" in message
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_load_state_dict_non_strict_skips_names_but_still_checks_shapes():
    net = Net()
    state = {"fc1.bias": np.full(3, 7.0), "unknown": np.zeros(1)}
    net.load_state_dict(state, strict=False)
    np.testing.assert_array_equal(net.fc1.bias.numpy(), 7.0)
    with pytest.raises(ValueError, match=r"shape mismatches: fc1.bias: checkpoint \(2,\) vs model \(3,\)"):
        net.load_state_dict({"fc1.bias": np.zeros(2)}, strict=False)


def test_load_state_dict_keeps_the_models_dtype():
    net = nn.Linear(2, 2)
    net.load_state_dict({"weight": np.ones((2, 2), dtype=np.float64), "bias": np.zeros(2, dtype=np.float64)})
    assert net.weight.dtype == np.float32 and net.bias.dtype == np.float32


# ----------------------------------------------------------------------------- modes, devices, grads


def test_train_and_eval_set_every_submodule():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    net.blocks.train(False)
    assert net.training and not net.blocks[2][0].training


def test_to_cpu_keeps_the_parameter_objects():
    net = Net()
    params = list(net.parameters())
    assert net.to("cpu") is net
    assert all(p is q for p, q in zip(params, net.parameters()))


def test_module_zero_grad_and_training_a_step():
    net = Net()
    x = mg.tensor(np.random.default_rng(0).standard_normal((6, 4)), dtype=np.float32)
    opt = optim.SGD(net.parameters(), lr=0.1)
    loss = (net(x) ** 2).mean()
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    opt.step()
    assert (net(x) ** 2).mean().item() < loss.item()
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


# ----------------------------------------------------------------------------- layers


def test_linear_init_follows_pytorch_bounds():
    mg.manual_seed(0)
    layer = nn.Linear(200, 100)
    bound = 1 / math.sqrt(200)    # kaiming_uniform(a=sqrt(5)): sqrt(6 / ((1 + 5) * fan_in)) = 1 / sqrt(fan_in)
    w, b = layer.weight.numpy(), layer.bias.numpy()
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert np.abs(w).max() > 0.99 * bound                       # the whole range is used
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound    # uniform: std = bound / sqrt(3)
    assert abs(w.mean()) < 0.02 * bound
    assert w.dtype == np.float32


def test_init_is_reproducible_with_manual_seed():
    mg.manual_seed(5)
    a = nn.Linear(3, 3).weight.numpy()
    mg.manual_seed(5)
    b = nn.Linear(3, 3).weight.numpy()
    mg.manual_seed(6)
    c = nn.Linear(3, 3).weight.numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_linear_forward_with_and_without_bias():
    layer = nn.Linear(3, 2, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(layer(mg.tensor(x)).numpy(), x @ layer.weight.numpy().T + layer.bias.numpy())
    plain = nn.Linear(3, 2, bias=False)
    assert plain.bias is None and [n for n, _ in plain.named_parameters()] == ["weight"]
    assert "in_features=3, out_features=2, bias=False" in repr(plain)


def test_sequential_indexing_iteration_and_forward():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Identity(), nn.Linear(4, 1))
    assert len(seq) == 4 and isinstance(seq[1], nn.Tanh) and isinstance(seq[-1], nn.Linear)
    assert [type(m).__name__ for m in seq] == ["Linear", "Tanh", "Identity", "Linear"]
    x = mg.tensor(np.random.default_rng(0).standard_normal((2, 3)), dtype=np.float32)
    expected = seq[3](seq[1](seq[0](x)))
    np.testing.assert_allclose(seq(x).numpy(), expected.numpy())
    assert "(0): Linear(in_features=3, out_features=4, bias=True)" in repr(seq)


def test_a_layer_refuses_input_of_another_dtype():
    with pytest.raises(TypeError, match="linear: .*input float64, weight float32"):
        nn.Linear(3, 2)(mg.tensor(np.ones((1, 3))))


def test_activation_modules():
    x = mg.tensor([-2.0, 0.5])
    np.testing.assert_allclose(nn.LeakyReLU(0.2)(x).numpy(), [-0.4, 0.5])
    np.testing.assert_allclose(nn.LeakyReLU()(x).numpy(), [-0.02, 0.5])
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), [0.0, 0.5])
    np.testing.assert_allclose(nn.Tanh()(x).numpy(), np.tanh([-2.0, 0.5]), rtol=1e-6)


# ----------------------------------------------------------------------------- init


def test_init_functions():
    mg.manual_seed(0)
    w = nn.Parameter(mg.zeros(64, 32))
    nn.init.xavier_uniform_(w)
    bound = math.sqrt(6 / (64 + 32))
    assert np.abs(w.numpy()).max() <= bound and np.abs(w.numpy()).max() > 0.95 * bound
    nn.init.normal_(w, mean=1.0, std=0.1)
    assert abs(w.numpy().mean() - 1.0) < 0.01 and abs(w.numpy().std() - 0.1) < 0.01
    assert w.dtype == np.float32
    nn.init.zeros_(w)
    assert np.all(w.numpy() == 0)
    nn.init.ones_(w)
    assert np.all(w.numpy() == 1)
    with pytest.raises(ValueError, match=r"init: fan in/out needs a tensor with at least 2 dims, got shape \(5,\)"):
        nn.init.xavier_uniform_(nn.Parameter(mg.zeros(5)))
