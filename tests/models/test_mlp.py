"""SigmaMLP: the vector backbone F(x_in, c_noise, cond) for toy 2-D data and table rows."""

from __future__ import annotations

import pytest
import torch

from diffsight.errors import DiffsightError
from diffsight.models import EDMPrecond
from diffsight.models.mlp import SigmaMLP

DIM, CLASSES = 3, 4


pytestmark = pytest.mark.usefixtures("one_thread")


def _mlp(num_classes: int = 0, *, perturb: bool = True, seed: int = 0, **kwargs) -> SigmaMLP:
    """A small SigmaMLP; ``perturb`` gives its zero-initialised output layer random weights so that the output
    depends on every input (otherwise F = 0 and most checks could not fail)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SigmaMLP(DIM, hidden=32, depth=2, emb_dim=16, num_classes=num_classes, **kwargs)
        if perturb:
            with torch.no_grad():
                net.out[-1].weight.normal_(0, 0.5)
                net.out[-1].bias.normal_(0, 0.5)
    return net


def _x(batch: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, DIM, generator=torch.Generator().manual_seed(seed))


def _c(batch: int = 5) -> torch.Tensor:
    return torch.linspace(-1.5, 1.0, batch)


def test_output_shape():
    net = _mlp()
    out = net(_x(), _c())
    assert out.shape == (5, DIM)
    assert torch.isfinite(out).all()


def test_zero_initialised_output_gives_zeros():
    """At init F = 0, so EDMPrecond starts as the identity-scaled denoiser c_skip * x."""
    net = _mlp(perturb=False)
    assert torch.count_nonzero(net(_x(), _c())) == 0
    assert torch.count_nonzero(net(_x(), _c(), None)) == 0
    den = EDMPrecond(net, sigma_data=0.5)
    x, sigma = _x(), torch.full((5,), 2.0)
    torch.testing.assert_close(den(x, sigma), x * 0.25 / (4 + 0.25))
    # a class-conditional net is zero too, conditional or not
    cnet = _mlp(CLASSES, perturb=False)
    assert torch.count_nonzero(cnet(_x(), _c(), torch.arange(5) % CLASSES)) == 0


def test_output_depends_on_noise_level():
    net = _mlp()
    x = _x()
    a, b = net(x, torch.full((5,), -1.0)), net(x, torch.full((5,), 0.5))
    assert (a - b).abs().max() > 1e-3


def test_fourier_frequencies_are_fixed():
    """The frequencies belong to the architecture: the same for every instance, whatever the global seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        a = SigmaMLP(DIM, hidden=8, depth=1, emb_dim=16)
        torch.manual_seed(2)
        b = SigmaMLP(DIM, hidden=8, depth=1, emb_dim=16)
        assert not torch.equal(a.inp.weight, b.inp.weight)  # the seeds did differ
    assert torch.equal(a.freqs, b.freqs)
    assert a.freqs.shape == (8,)
    assert "freqs" in a.state_dict()  # saved with the weights
    scaled = SigmaMLP(DIM, hidden=8, depth=1, emb_dim=16, fourier_scale=8.0)
    torch.testing.assert_close(scaled.freqs, a.freqs * 2)


def test_config_round_trips():
    net = _mlp(CLASSES)
    assert net.config == {
        "dim": DIM,
        "hidden": 32,
        "depth": 2,
        "emb_dim": 16,
        "num_classes": CLASSES,
        "fourier_scale": 4.0,
    }
    again = SigmaMLP(**net.config)
    again.load_state_dict(net.state_dict())
    x, c, y = _x(), _c(), torch.arange(5) % CLASSES
    torch.testing.assert_close(again(x, c, y), net(x, c, y), rtol=0, atol=0)


def test_class_embedding_has_a_null_row():
    net = _mlp(CLASSES)
    assert net.null_class == CLASSES
    assert net.class_embed.num_embeddings == CLASSES + 1
    assert _mlp().null_class is None and _mlp().class_embed is None


def test_cond_none_equals_null_class():
    net = _mlp(CLASSES)
    x, c = _x(), _c()
    null = net(x, c, None)
    torch.testing.assert_close(null, net(x, c, torch.full((5,), CLASSES)), rtol=0, atol=0)
    torch.testing.assert_close(null, net(x, c, [CLASSES] * 5), rtol=0, atol=0)
    labelled = net(x, c, torch.zeros(5, dtype=torch.long))
    assert (null - labelled).abs().max() > 1e-3  # the label really enters


def test_labels_act_per_sample():
    net = _mlp(CLASSES)
    x, c = _x(), _c()
    y = torch.tensor([0, 1, 2, 3, 0])
    y2 = y.clone()
    y2[1] = 3
    diff = (net(x, c, y) - net(x, c, y2)).abs().amax(1)
    assert diff[1] > 1e-3
    assert torch.all(diff[[0, 2, 3, 4]] == 0)


def test_label_on_unconditional_net_is_refused():
    with pytest.raises(DiffsightError, match="unconditional"):
        _mlp()(_x(), _c(), torch.zeros(5, dtype=torch.long))


@pytest.mark.parametrize("labels", [[0, 1, CLASSES + 1, 0, 0], [0, -1, 0, 0, 0], [0, 1, 2]])
def test_bad_labels_give_a_clear_error(labels):
    with pytest.raises(DiffsightError):
        _mlp(CLASSES)(_x(), _c(), torch.tensor(labels))


@pytest.mark.parametrize("shape", [(5,), (5, DIM + 1), (5, 1, DIM), (5, DIM, 1)])
def test_bad_input_shape_is_refused(shape):
    with pytest.raises(DiffsightError, match=rf"expects \(B, {DIM}\) inputs"):
        _mlp()(torch.zeros(shape), _c())


@pytest.mark.parametrize(
    "kwargs", [{"dim": 0}, {"dim": 2, "hidden": 0}, {"dim": 2, "depth": 0}, {"dim": 2, "emb_dim": 1}]
)
def test_bad_sizes_are_refused(kwargs):
    with pytest.raises(DiffsightError, match="SigmaMLP needs"):
        SigmaMLP(**kwargs)


def test_gradients_flow_to_input_and_weights():
    net = _mlp(CLASSES)
    x = _x().requires_grad_(True)
    net(x, _c(), torch.arange(5) % CLASSES).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().amin(1).gt(0).all()  # every sample, through the network
    for name, p in net.named_parameters():
        assert p.grad is not None, name
    assert net.inp.weight.grad.abs().sum() > 0
    assert net.class_embed.weight.grad[:CLASSES].abs().sum() > 0


def test_zero_init_still_trains():
    """With the output layer zeroed, the loss gradient reaches that layer (so training can start)."""
    net = _mlp(perturb=False)
    target = torch.randn(5, DIM, generator=torch.Generator().manual_seed(3))
    (net(_x(), _c()) - target).square().sum().backward()
    assert net.out[-1].weight.grad.abs().sum() > 0
    assert net.out[-1].bias.grad.abs().sum() > 0


def test_float64_follows_input():
    net = _mlp().double()
    out = net(_x().double(), _c())
    assert out.dtype == torch.float64
