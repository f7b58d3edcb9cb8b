"""PCGrad: the Gram-matrix formulation against a literal Algorithm 1 (Yu et al. 2020)."""

import numpy as np
import pytest
import torch

from mtcli import pcgrad


@pytest.fixture(params=["native", "torch"], autouse=True)
def backend(request, monkeypatch):
    """Every test runs on the compiled kernel and on the torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(pcgrad, "_use_native", lambda grads: None)
    else:
        assert pcgrad.backend("cpu") == "native-cpu", "mtcli._pcgrad is not built: run `make install`"
    return request.param


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


@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("n", [1, 7, 1000, 1_000_003])
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
@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("n", [1, 7, 1_000_003])
def test_half_precision_gradients(dtype, num_tasks, n):
    g = _grads(num_tasks, n, conflicting=True, seed=num_tasks).to(dtype)
    wide = g.double()
    orders = pcgrad.task_orders(num_tasks, seed=4)
    # Gram and coefficients are exact to 1e-5 (fp64 accumulation of the half inputs) ...
    gram, exact_gram = pcgrad.gram(g), (wide @ wide.T).numpy()
    assert np.abs(gram - exact_gram).max() <= 1e-5 * np.abs(exact_gram).max()
    assert np.allclose(pcgrad.pcgrad_weights(gram, orders), pcgrad.pcgrad_weights(exact_gram, orders), rtol=1e-5)
    # ... and the output is the oracle rounded once to the gradients' dtype
    result = pcgrad.project(g, orders=orders)
    assert result.dtype == dtype
    ulp = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    expected = pcgrad.project_literal(wide, orders=orders)
    # (scaled as in _assert_close: where collinear conflicts cancel to 0, by the largest input entry)
    scale = max(expected.abs().max().item(), wide.abs().max().item())
    assert ((result.double() - expected).abs() <= ulp * expected.abs() + 1e-6 * scale).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_conversions_round_trip_exactly(dtype):
    """Weight 1 and 2 are exact in every format: the combine pass must reproduce them bit for bit,
    subnormals, infinities and the largest finite values included."""
    info = torch.finfo(dtype)
    special = torch.tensor([0.0, -0.0, info.tiny, info.tiny / 4, -info.tiny / 8, info.max, -info.max,
                            float("inf"), float("-inf"), 1.0, -3.5, 65504.0 if dtype == torch.float16 else 3e38])
    values = torch.cat([special, torch.randn(10_000) * 100]).to(dtype)
    grads = values[None].contiguous()
    assert torch.equal(pcgrad.combine(grads, [1.0]), values)
    doubled = pcgrad.combine(grads, [2.0])
    assert torch.equal(doubled, (values.float() * 2).to(dtype))
    nan = pcgrad.combine(torch.tensor([[float("nan"), 1.0]], dtype=dtype), [1.0])
    assert torch.isnan(nan[0]) and nan[1] == 1


def test_native_coefficients_equal_python_coefficients():
    from mtcli import _pcgrad

    for num_tasks in range(2, 9):
        g = _grads(num_tasks, 5000, conflicting=True, seed=num_tasks)
        gram = pcgrad.gram(g)
        orders = pcgrad.task_orders(num_tasks, seed=num_tasks)
        assert np.allclose(_pcgrad.weights(gram, np.array(orders)), pcgrad.pcgrad_weights(gram, orders), rtol=1e-12)


def test_native_one_call_project_writes_in_place():
    from mtcli import _pcgrad

    g = _grads(3, 12345, conflicting=True)
    orders = pcgrad.task_orders(3, seed=9)
    out = torch.empty(12345)
    weights = _pcgrad.project(g.data_ptr(), 3, 12345, "float32", np.array(orders), out.data_ptr())
    _assert_close(out, pcgrad.project_literal(g.double(), orders=orders), grads=g)
    assert np.allclose(weights, pcgrad.pcgrad_weights(pcgrad.gram(g), orders))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="tasks, n"):
        pcgrad.project(torch.zeros(5))
    with pytest.raises(ValueError, match="contiguous"):
        pcgrad.project(torch.zeros(6, 3).T)
    with pytest.raises(ValueError, match="out must be"):
        pcgrad.project(torch.zeros(2, 4), out=torch.zeros(3))


@pytest.mark.parametrize("n", [7, 100_000])
def test_two_tasks_equal_torchjd(n):
    from torchjd.aggregation import PCGrad

    for seed, conflicting in ((0, True), (1, False), (2, True)):
        g = _grads(2, n, conflicting=conflicting, seed=seed)
        _assert_close(pcgrad.project(g, seed=seed), PCGrad()(g).double(), grads=g)


def test_conflict_stats_from_gram():
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0], [0.0, 2.0]])
    stats = pcgrad.conflict_stats(pcgrad.gram(g))
    assert stats["cosine"][(0, 1)] == pytest.approx(-1 / np.sqrt(2))
    assert stats["cosine"][(0, 2)] == pytest.approx(0.0)
    assert stats["conflict_fraction"] == pytest.approx(1 / 3)
