"""The CUDA PCGrad passes against the literal Algorithm 1 oracle. Skipped without a GPU;
on a GPU machine they must run (a build without the CUDA kernels fails here)."""

import numpy as np
import pytest
import torch

from mtcli import pcgrad

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(autouse=True)
def cuda_kernels():
    assert pcgrad.backend("cuda") == "native-cuda", "mtcli._pcgrad was built without the CUDA kernels"


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
    orders = pcgrad.task_orders(num_tasks, seed=3)
    expected = pcgrad.project_literal(g.double().cpu(), orders=orders)
    got = pcgrad.project(g, orders=orders).double().cpu()
    scale = max(expected.abs().max().item(), g.abs().max().item())
    assert (got - expected).abs().max().item() <= 1e-5 * scale


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_half_precision(dtype):
    g = _grads(3, 1_000_003, seed=1, dtype=dtype)
    wide = g.double().cpu()
    orders = pcgrad.task_orders(3, seed=5)
    exact = (wide @ wide.T).numpy()
    assert np.abs(pcgrad.gram(g) - exact).max() <= 1e-5 * np.abs(exact).max()
    got = pcgrad.project(g, orders=orders)
    assert got.dtype == dtype and got.is_cuda
    ulp = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}[dtype]
    expected = pcgrad.project_literal(wide, orders=orders)
    assert ((got.double().cpu() - expected).abs() <= ulp * expected.abs() + 1e-6 * expected.abs().max()).all()


def test_cuda_is_deterministic_and_writes_in_place():
    g = _grads(5, 3_000_001, seed=2)
    out = torch.empty(g.shape[1], device="cuda")
    first = pcgrad.project(g, seed=4, out=out).clone()
    assert out.data_ptr() == pcgrad.project(g, seed=4, out=out).data_ptr()
    assert torch.equal(first, out)  # fixed block order: bit-identical runs
    assert np.array_equal(pcgrad.gram(g), pcgrad.gram(g))


def test_cuda_combine_runs_on_the_current_stream():
    g = _grads(3, 2_000_000, seed=6)
    side = torch.cuda.Stream()
    out = torch.empty(g.shape[1], device="cuda")
    weights = pcgrad.pcgrad_weights(pcgrad.gram(g), pcgrad.task_orders(3, 0))
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        pcgrad.combine(g, weights, out=out)
        result = out.clone()  # ordered after the combine on the same stream
    side.synchronize()
    expected = (torch.tensor(weights, dtype=torch.float64, device="cuda") @ g.double()).float()
    assert torch.allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_more_than_eight_tasks_fall_back_to_torch():
    g = _grads(9, 1000, seed=7)
    assert pcgrad._use_native(g) is None
    expected = pcgrad.project_literal(g.double().cpu(), seed=1)
    assert torch.allclose(pcgrad.project(g, seed=1).double().cpu(), expected, rtol=1e-5, atol=1e-4)


def test_training_step_with_pcgrad_on_gpu(tmp_path, tiny_model_dir):
    from rich.console import Console

    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    trainer = Trainer(TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path), limit=32, batch_size=8,
                                  sampler="triple-batch", combine="pcgrad", device="cuda", max_steps=3, name="gpu"),
                      Console(quiet=True))
    assert trainer.grads.buffer.is_cuda
    trainer.run()
