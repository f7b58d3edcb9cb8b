"""The CUDA passes against the literal Algorithm 1 oracle and every weighting against its
CPU run. Skipped without a GPU; on a GPU machine they must run (a build without the CUDA
kernels fails here)."""

import numpy as np
import pytest
import torch

from conftest import pcgrad_literal, random_orders
from mtcli.weightings import WEIGHTINGS, aggregate, kernel
from mtcli.weightings.pcgrad import pcgrad_weights


def project(grads, orders, out=None):
    return kernel.combine(grads, pcgrad_weights(kernel.gram(grads), orders), out)

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def cuda_kernels():
    assert kernel.backend("cuda") == "native-cuda", "mtcli._kernel was built without the CUDA kernels"


def _grads(num_tasks, n, conflicting=True, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    g = torch.randn(num_tasks, n, generator=gen)
    if conflicting:
        g[1:] -= 1.5 * g[0] * torch.rand(num_tasks - 1, 1, generator=gen)
    else:
        g += 10
    return g.to(dtype).cuda().contiguous()


@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("n", [1, 7, 1_000_003])
@pytest.mark.parametrize("conflicting", [True, False])
def test_cuda_matches_the_oracle(num_tasks, n, conflicting):
    g = _grads(num_tasks, n, conflicting, seed=num_tasks + n)
    orders = random_orders(num_tasks, seed=3)
    expected = pcgrad_literal(g.double().cpu(), orders)
    got = project(g, orders).double().cpu()
    scale = max(expected.abs().max().item(), g.abs().max().item())
    assert (got - expected).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half_precision(dtype):
    g = _grads(3, 1_000_003, seed=1, dtype=dtype)
    wide = g.double().cpu()
    orders = random_orders(3, seed=5)
    exact = (wide @ wide.T).numpy()
    assert np.abs(kernel.gram(g) - exact).max() <= 1e-5 * np.abs(exact).max()
    got = project(g, orders)
    assert got.dtype == dtype and got.is_cuda
    ulp = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    expected = pcgrad_literal(wide, orders)
    assert ((got.double().cpu() - expected).abs() <= ulp * expected.abs() + 1e-6 * expected.abs().max()).all()


def test_cuda_is_deterministic_and_writes_in_place():
    g = _grads(5, 3_000_001, seed=2)
    out = torch.empty(g.shape[1], device="cuda")
    orders = random_orders(5, seed=4)
    first = project(g, orders, out=out).clone()
    assert out.data_ptr() == project(g, orders, out=out).data_ptr()
    assert torch.equal(first, out)  # fixed block order: bit-identical runs
    assert np.array_equal(kernel.gram(g), kernel.gram(g))


def test_cuda_combine_runs_on_the_current_stream():
    g = _grads(3, 2_000_000, seed=6)
    side = torch.cuda.Stream()
    out = torch.empty(g.shape[1], device="cuda")
    weights = pcgrad_weights(kernel.gram(g), random_orders(3, 0))
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        kernel.combine(g, weights, out=out)
        result = out.clone()  # ordered after the combine on the same stream
    side.synchronize()
    expected = (torch.tensor(weights, dtype=torch.float64, device="cuda") @ g.double()).float()
    assert torch.allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_more_than_eight_tasks_fall_back_to_torch():
    g = _grads(9, 1000, seed=7)
    assert kernel._use_native(g) is None
    orders = random_orders(9, seed=1)
    expected = pcgrad_literal(g.double().cpu(), orders)
    assert torch.allclose(project(g, orders).double().cpu(), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", [n for n, cls in WEIGHTINGS.items() if n != "weighted" and cls.family != "losses"
                                  and not getattr(cls, "reads_losses", False)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_every_weighting_on_cuda_equals_its_cpu_run(name, dtype):
    g = _grads(6, 1_000_003, seed=8, dtype=dtype)
    got, expected = aggregate(name, g), aggregate(name, g.cpu())
    assert got.is_cuda and got.dtype == dtype
    scale = expected.double().abs().max().item()
    ulp = {torch.float32: 1e-5, torch.bfloat16: 2.0**-7}[dtype]
    assert (got.double().cpu() - expected.double()).abs().max().item() <= ulp * scale


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_rows_passes_on_cuda_equal_the_cpu_passes(dtype):
    """GradDrop (the same counter-hash draws), the trimmed mean, and the in-place state passes."""
    g = _grads(5, 300_007, seed=3, dtype=dtype)
    ulp = {torch.float32: 1e-5, torch.bfloat16: 2.0**-7, torch.float16: 2.0**-10}[dtype]

    def close(a, b):
        scale = b.double().abs().max().item()
        assert (a.double().cpu() - b.double().cpu()).abs().max().item() <= ulp * scale

    close(kernel.graddrop(g, [0.0, 0.1, 0.2, 0.3, 0.4], 11, 6), kernel.graddrop(g.cpu(), [0.0, 0.1, 0.2, 0.3, 0.4], 11, 6))
    close(kernel.trimmed_mean(g, 2), kernel.trimmed_mean(g.cpu(), 2))
    state = torch.randn(7, g.shape[1])
    on_gpu = state.cuda()
    kernel.ema_rows(g, on_gpu, [6, 0, 2, 3, 1], 0.7, [1, 2, 3, 4, 5])
    kernel.ema_rows(g.cpu(), state, [6, 0, 2, 3, 1], 0.7, [1, 2, 3, 4, 5])
    assert torch.allclose(on_gpu.cpu(), state, rtol=1e-5, atol=1e-6)
    squares = torch.rand(7, g.shape[1])
    squares_gpu = squares.cuda()
    w_gpu = kernel.excess_stats(g, squares_gpu, [1, 2, 3, 4, 5])
    w_cpu = kernel.excess_stats(g.cpu(), squares, [1, 2, 3, 4, 5])
    assert np.allclose(w_gpu, w_cpu, rtol=1e-5) and torch.allclose(squares_gpu.cpu(), squares, rtol=1e-6)


@pytest.mark.parametrize("name", ["moco", "db-mtl", "gradnorm", "imtl", "excess-mtl", "graddrop"])
def test_stateful_methods_train_on_gpu(tmp_path, tiny_model_dir, name):
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    trainer = Trainer(TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path), limit=32, batch_size=8,
                                  sampler="triple-batch", combine=name, device="cuda", max_steps=3, name=name),
                      Console(quiet=True))
    trainer.run()
    assert all(t.is_cuda for t in vars(trainer.weighting).values() if torch.is_tensor(t) and t.dim() == 2)


def test_training_step_with_upgrad_on_gpu(tmp_path, tiny_model_dir):
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    trainer = Trainer(TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path), limit=32, batch_size=8,
                                  sampler="triple-batch", combine="upgrad", device="cuda", max_steps=3, name="gpu"),
                      Console(quiet=True))
    assert trainer.phase.grads.buffer.is_cuda
    trainer.run()
