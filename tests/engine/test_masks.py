"""Hard-concrete gates."""

import pytest
import torch

from engine.masks import HardConcreteGates, deterministic, expected_l0, sample


def test_samples_in_unit_interval_with_exact_zeros_and_ones():
    torch.manual_seed(0)
    z = sample(torch.zeros(10000))
    assert z.min() >= 0 and z.max() <= 1
    assert (z == 0).any() and (z == 1).any()


def test_deterministic_monotone_and_l0_bounds():
    la = torch.linspace(-10, 10, 101)
    assert (deterministic(la).diff() >= 0).all()
    real = torch.ones(5, 7, dtype=torch.bool).tril()
    gates = HardConcreteGates(real, init_log_alpha=0.0, init_std=0.0)
    # P(z > 0) at log alpha 0 is sigmoid(-BETA log(-GAMMA / ZETA)) = 0.8318 (closed form; sampled in test_math.py)
    assert float(gates.expected_l0().detach()) == pytest.approx(0.831822 * int(real.sum()), rel=1e-5)
    assert (expected_l0(la).diff() >= 0).all()


def test_open_init_keeps_everything_and_discretisation_counts():
    real = torch.ones(4, 6, dtype=torch.bool).triu()
    gates = HardConcreteGates(real, init_log_alpha=10.0)
    assert torch.equal(gates.discretised(), real)
    gates.log_alpha.data[:] = -10.0
    assert not gates.discretised().any()
    assert (gates.sample() * ~real == 0).all()
