"""PCGrad: the Gram-matrix formulation against a literal Algorithm 1 (Yu et al. 2020)."""

import numpy as np
import pytest
import torch

from mtcli import pcgrad


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5, grads: torch.Tensor | None = None):
    """max |a - e| <= rel * scale, the scale being max |e| or, where PCGrad cancels the
    gradients (collinear conflicts give an exact 0), the largest input gradient entry."""
    scale = expected.abs().max().item()
    if grads is not None:
        scale = max(scale, grads.abs().max().item())
    assert (actual.double() - expected.double()).abs().max().item() <= rel * max(scale, 1e-30)


def _grads(num_tasks: int, n: int, *, conflicting: bool, seed: int = 0) -> torch.Tensor:
    g = torch.randn(num_tasks, n, generator=torch.Generator().manual_seed(seed))
    if conflicting:  # push later tasks against the first so most pairs conflict
        g[1:] -= 1.5 * g[0] * torch.rand(num_tasks - 1, 1, generator=torch.Generator().manual_seed(seed + 1))
    else:  # a common direction dominates: no pair conflicts
        g += 10 * torch.ones(n)
    return g.contiguous()


def test_two_task_example_by_hand():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
    # g1.g2 = -1 < 0: g1' = g1 - (-1/2) g2 = (0.5, 0.5); g2' = g2 - (-1/1) g1 = (0, 1)
    expected = torch.tensor([0.5, 1.5])
    assert torch.allclose(pcgrad.project_literal(g, seed=0), expected)
    assert torch.allclose(pcgrad.project(g, seed=0), expected)


def test_no_conflict_is_plain_sum():
    g = _grads(4, 1000, conflicting=False)
    _assert_close(pcgrad.project(g, seed=3), g.sum(0))
    assert np.allclose(pcgrad.pcgrad_weights(pcgrad.gram(g), pcgrad.task_orders(4, 3)), 1.0)


@pytest.mark.parametrize("num_tasks", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("n", [1, 7, 1000, 100_003])
@pytest.mark.parametrize("conflicting", [True, False])
def test_vectorised_matches_literal_oracle(num_tasks, n, conflicting):
    g = _grads(num_tasks, n, conflicting=conflicting, seed=num_tasks * n)
    orders = pcgrad.task_orders(num_tasks, seed=11)
    expected = pcgrad.project_literal(g.double(), orders=orders)
    _assert_close(pcgrad.project(g, orders=orders), expected, grads=g)
    _assert_close(pcgrad.project_literal(g, orders=orders), expected, grads=g)


def test_order_matters_and_seed_fixes_it():
    g = _grads(5, 64, conflicting=True, seed=5)
    assert torch.equal(pcgrad.project(g, seed=1), pcgrad.project(g, seed=1))
    results = {tuple(pcgrad.project(g, seed=s)[:4].tolist()) for s in range(8)}
    assert len(results) > 1  # Algorithm 1's random order changes the result for 5 conflicting tasks


def test_task_orders_are_permutations_of_the_others():
    orders = pcgrad.task_orders(6, seed=0)
    for i, order in enumerate(orders):
        assert sorted(order) == [j for j in range(6) if j != i]
    assert orders == pcgrad.task_orders(6, seed=0)


def test_out_buffer_and_single_task():
    g = _grads(3, 500, conflicting=True)
    out = torch.empty(500)
    result = pcgrad.project(g, seed=0, out=out)
    assert result.data_ptr() == out.data_ptr()
    single = g[:1].contiguous()
    assert torch.equal(pcgrad.project(single, seed=0), single[0])


def test_zero_gradient_task_is_harmless():
    g = _grads(3, 100, conflicting=True)
    g[1] = 0
    _assert_close(pcgrad.project(g, seed=2), pcgrad.project_literal(g.double(), seed=2))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_gradients(dtype):
    g = _grads(3, 10_000, conflicting=True).to(dtype)
    expected = pcgrad.project_literal(g.double(), seed=4)
    result = pcgrad.project(g, seed=4)
    assert result.dtype == dtype
    _assert_close(result, expected, rel=1e-2)  # one rounding to the output dtype


def test_conflict_stats_from_gram():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0]])
    stats = pcgrad.conflict_stats(pcgrad.gram(g))
    assert stats["cosine"][(0, 1)] == pytest.approx(-1 / np.sqrt(2))
    assert stats["cosine"][(0, 2)] == pytest.approx(0.0)
    assert stats["conflict_fraction"] == pytest.approx(1 / 3)
