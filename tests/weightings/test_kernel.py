"""The two kernel passes (Gram, combine) on the native module and on the torch fallback,
and PCGrad through them against a literal Algorithm 1 (Yu et al. 2020)."""

import numpy as np
import pytest
import torch

from conftest import pcgrad_literal, random_orders
from mtcli.weightings import kernel
from mtcli.weightings.pcgrad import pcgrad_weights


def project(grads, orders, out=None):
    """PCGrad through the kernel: Gram, Algorithm 1 on it, combine."""
    return kernel.combine(grads, pcgrad_weights(kernel.gram(grads), orders), out)


@pytest.fixture(params=["native", "torch"], autouse=True)
def backend(request, monkeypatch):
    """Every test runs on the compiled kernel and on the torch fallback."""
    if request.param == "torch":
        monkeypatch.setattr(kernel, "_use_native", lambda grads: None)
    else:
        assert kernel.backend("cpu") == "native-cpu", "mtcli._kernel is not built: run `make install`"
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
    assert torch.allclose(pcgrad_literal(g, [[1], [0]]), expected)
    assert torch.allclose(project(g, [[1], [0]]), expected)


def test_no_conflict_is_plain_sum():
    g = _grads(4, 1000, conflicting=False)
    _assert_close(project(g, random_orders(4, 3)), g.sum(0))
    assert np.allclose(pcgrad_weights(kernel.gram(g), random_orders(4, 3)), 1.0)


@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("n", [1, 7, 1000, 1_000_003])
@pytest.mark.parametrize("conflicting", [True, False])
def test_vectorised_matches_literal_oracle(num_tasks, n, conflicting):
    g = _grads(num_tasks, n, conflicting=conflicting, seed=num_tasks * n)
    orders = random_orders(num_tasks, seed=11)
    expected = pcgrad_literal(g.double(), orders)
    _assert_close(project(g, orders), expected, grads=g)
    _assert_close(pcgrad_literal(g, orders), expected, grads=g)


def test_order_matters():
    g = _grads(5, 64, conflicting=True, seed=5)
    results = {tuple(project(g, random_orders(5, s))[:4].tolist()) for s in range(8)}
    assert len(results) > 1  # Algorithm 1's random order changes the result for 5 conflicting tasks


def test_out_buffer_and_single_task():
    g = _grads(3, 500, conflicting=True)
    out = torch.empty(500)
    result = project(g, random_orders(3, 0), out=out)
    assert result.data_ptr() == out.data_ptr()
    single = g[:1].contiguous()
    assert torch.equal(project(single, [[]]), single[0])


def test_zero_gradient_task_is_harmless():
    g = _grads(3, 100, conflicting=True)
    g[1] = 0
    orders = random_orders(3, 2)
    _assert_close(project(g, orders), pcgrad_literal(g.double(), orders))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("n", [1, 7, 1_000_003])
def test_half_precision_gradients(dtype, num_tasks, n):
    g = _grads(num_tasks, n, conflicting=True, seed=num_tasks).to(dtype)
    wide = g.double()
    orders = random_orders(num_tasks, seed=4)
    # Gram and coefficients are exact to 1e-5 (fp32 products of the half inputs, summed in fp64) ...
    gram, exact_gram = kernel.gram(g), (wide @ wide.T).numpy()
    assert np.abs(gram - exact_gram).max() <= 1e-5 * np.abs(exact_gram).max()
    assert np.allclose(pcgrad_weights(gram, orders), pcgrad_weights(exact_gram, orders), rtol=1e-5)
    # ... and the output is the oracle rounded once to the gradients' dtype
    result = project(g, orders)
    assert result.dtype == dtype
    ulp = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    expected = pcgrad_literal(wide, orders)
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
    assert torch.equal(kernel.combine(grads, [1.0]), values)
    doubled = kernel.combine(grads, [2.0])
    assert torch.equal(doubled, (values.float() * 2).to(dtype))
    nan = kernel.combine(torch.tensor([[float("nan"), 1.0]], dtype=dtype), [1.0])
    assert torch.isnan(nan[0]) and nan[1] == 1


def test_native_passes_write_in_place():
    from mtcli import _kernel

    g = _grads(3, 12345, conflicting=True)
    orders = random_orders(3, seed=9)
    gram = _kernel.gram(g.data_ptr(), 3, 12345, "float32")
    out = torch.empty(12345)
    _kernel.combine(g.data_ptr(), 3, 12345, "float32", pcgrad_weights(gram, orders), out.data_ptr())
    _assert_close(out, pcgrad_literal(g.double(), orders), grads=g)


@pytest.mark.parametrize("num_tasks", range(1, 12))
@pytest.mark.parametrize("n", [1, 7, 255, 256, 1024, 1025, 300_001])
def test_gram_is_within_the_fp32_chunk_bound(num_tasks, n):
    """fp32 products summed 32 to a lane, those sums in fp64: each entry within 32 units of fp32
    rounding (2e-6) of the exact value, for every chunk and tail length."""
    g = torch.randn(num_tasks, n, generator=torch.Generator().manual_seed(n + num_tasks)) * 1e3
    exact = (g.double() @ g.double().T).numpy()
    assert np.abs(kernel.gram(g) - exact).max() <= 32 * 2.0**-24 * np.abs(exact).max()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="tasks, n"):
        kernel.gram(torch.zeros(5))
    with pytest.raises(ValueError, match="contiguous"):
        kernel.gram(torch.zeros(6, 3).T)
    with pytest.raises(ValueError, match="out must be"):
        kernel.combine(torch.zeros(2, 4), [1, 1], out=torch.zeros(3))
