"""The rows family (GradDrop, TrimmedMean, ExcessMTL, MoCo, DB-MTL) and SDMGrad: TorchJD's
aggregators where TorchJD has the method, literal oracles written from the papers' algorithms
where only LibMTL has it (MoCo, DB-MTL), for T = 2..8 and several steps for the stateful
ones, to 1e-5 relative; the native passes against their torch fallbacks on every dtype;
state that survives a checkpoint bit for bit."""

import pickle

import numpy as np
import pytest
import torch

aggregation = pytest.importorskip("torchjd.aggregation")

from mtcli.weightings import kernel, make  # noqa: E402

STEPS = 4


def _rows(num_tasks: int, step: int, n: int = 2000, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(97 * num_tasks + step)
    rows = torch.randn(num_tasks, n, generator=g)
    rows[1:] -= 0.8 * rows[0] * torch.rand(num_tasks - 1, 1, generator=g)   # some conflict
    return (rows * torch.linspace(0.5, 2.0, num_tasks)[:, None]).to(dtype).contiguous()


def _losses(num_tasks: int, step: int) -> np.ndarray:
    return np.random.default_rng(num_tasks + 31 * step).uniform(0.2, 2.0, num_tasks)


def _ours(method, rows: torch.Tensor, losses=None) -> torch.Tensor:
    out = torch.empty(rows.shape[1], dtype=rows.dtype)
    tasks = list(range(rows.shape[0]))
    method.combine_rows(rows, out, tasks, kernel.gram(rows), losses)
    return out


def _relative(a, b) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_graddrop_equals_torchjd_with_the_same_draws(num_tasks, monkeypatch):
    ours = make("graddrop", num_tasks=num_tasks, seed=5)
    theirs = aggregation.GradDrop()
    for step in range(STEPS):
        rows = _rows(num_tasks, step)
        draws = torch.from_numpy(kernel.graddrop_draws(5, step, rows.shape[1]))
        monkeypatch.setattr(torch, "rand", lambda *a, **k: draws.to(k.get("dtype", torch.float64)))
        expected = theirs(rows.double())
        monkeypatch.undo()
        assert _relative(_ours(ours, rows), expected) <= 1e-5, step


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_graddrop_with_a_leak_equals_torchjd(num_tasks, monkeypatch):
    ours = make("graddrop:leak=0.25", num_tasks=num_tasks, seed=1)
    theirs = aggregation.GradDrop(leak=torch.full((num_tasks,), 0.25, dtype=torch.float64))
    rows = _rows(num_tasks, 0)
    draws = torch.from_numpy(kernel.graddrop_draws(1, 0, rows.shape[1]))
    monkeypatch.setattr(torch, "rand", lambda *a, **k: draws)
    expected = theirs(rows.double())
    monkeypatch.undo()
    assert _relative(_ours(ours, rows), expected) <= 1e-5


def test_graddrop_draws_are_the_kernels_hash():
    """The literal splitmix64 of rows.h, by hand for one column."""
    mask = (1 << 64) - 1

    def splitmix(z):
        z = (z + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    key = splitmix(7 ^ splitmix(3))
    assert kernel.graddrop_draws(7, 3, 10)[9] == (splitmix((key + 9) & mask) >> 40) / 2**24


@pytest.mark.parametrize("num_tasks", range(3, 9))
def test_trimmed_mean_equals_torchjd(num_tasks):
    for trim in range(1, (num_tasks - 1) // 2 + 1):
        ours = make(f"trimmed-mean:trim={trim}", num_tasks=num_tasks)
        rows = _rows(num_tasks, trim)
        assert _relative(_ours(ours, rows), aggregation.TrimmedMean(trim)(rows.double())) <= 1e-5


def test_trimmed_mean_trims_what_a_small_step_allows():
    rows = _rows(2, 0)
    assert _relative(_ours(make("trimmed-mean:trim=3", num_tasks=5), rows), rows.double().mean(0)) <= 1e-6


@pytest.mark.parametrize("warmup", [0, 2])
@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_excess_mtl_equals_torchjd_over_steps(num_tasks, warmup):
    ours = make(f"excess-mtl:n_warmup_steps={warmup}", num_tasks=num_tasks)
    theirs = aggregation.ExcessMTL(n_warmup_steps=warmup)
    for step in range(STEPS + warmup):
        rows = _rows(num_tasks, step)
        assert _relative(_ours(ours, rows), theirs(rows.double())) <= 1e-5, step


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_sdmgrad_equals_torchjd_over_steps(num_tasks):
    ours = make("sdmgrad", num_tasks=num_tasks)
    theirs = aggregation.SDMGradWeighting()
    for step in range(STEPS):
        rows = _rows(num_tasks, step)
        gram = kernel.gram(rows)
        expected = theirs(torch.from_numpy(gram))
        assert _relative(torch.from_numpy(ours(gram)), expected) <= 1e-5, step


def moco_oracle(num_tasks, steps, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0):
    """Fernando et al. 2023, Algorithm 1 with LibMTL's normalisation g L / |g|: y tracks the
    gradients with step beta_s, lambda = softmax(lambda - gamma_s (Y Y^T + rho I) lambda)."""
    y = torch.zeros(num_tasks, _rows(num_tasks, 0).shape[1], dtype=torch.float64)
    lam = torch.full((num_tasks,), 1.0 / num_tasks, dtype=torch.float64)
    out = []
    for s in range(1, steps + 1):
        g = _rows(num_tasks, s - 1).double()
        losses = torch.from_numpy(_losses(num_tasks, s - 1))
        g = g / (g.norm(dim=1, keepdim=True) + 1e-8) * losses[:, None]
        y = y - beta / s ** beta_sigma * (y - g)
        lam = torch.softmax(lam - gamma / s ** gamma_sigma * (y @ y.T + rho * torch.eye(num_tasks)) @ lam, -1)
        out.append(y.T @ lam)
    return out


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_moco_equals_the_papers_algorithm(num_tasks):
    ours = make("moco", num_tasks=num_tasks)
    for step, expected in enumerate(moco_oracle(num_tasks, STEPS)):
        got = _ours(ours, _rows(num_tasks, step), _losses(num_tasks, step))
        assert _relative(got, expected) <= 1e-5, step


def db_mtl_oracle(num_tasks, steps, beta=0.9, beta_sigma=0.5):
    """Lin et al. 2023: gradients of log(L + 1e-8), their moving average with beta_s, every
    task's average scaled to the largest norm, summed."""
    h = torch.zeros(num_tasks, _rows(num_tasks, 0).shape[1], dtype=torch.float64)
    out = []
    for s in range(1, steps + 1):
        losses = torch.from_numpy(_losses(num_tasks, s - 1))
        g = _rows(num_tasks, s - 1).double() / (losses[:, None] + 1e-8)
        h = g + beta / s ** beta_sigma * (h - g)
        norms = h.norm(dim=1)
        out.append(((norms.max() / (norms + 1e-8))[:, None] * h).sum(0))
    return out


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_db_mtl_equals_the_papers_algorithm(num_tasks):
    ours = make("db-mtl", num_tasks=num_tasks)
    for step, expected in enumerate(db_mtl_oracle(num_tasks, STEPS)):
        got = _ours(ours, _rows(num_tasks, step), _losses(num_tasks, step))
        assert _relative(got, expected) <= 1e-5, step


def test_db_mtl_scales_the_heads_by_the_log_losses_gradient():
    rows, losses = _rows(3, 0), np.array([0.5, 1.0, 2.0])
    _, factors = make("db-mtl", num_tasks=3).combine_rows(rows, torch.empty(rows.shape[1]), [0, 1, 2],
                                                          kernel.gram(rows), losses)
    assert np.allclose(factors, 1 / (losses + 1e-8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_native_passes_equal_their_torch_fallbacks(dtype, monkeypatch):
    rows = _rows(5, 0, n=3001, dtype=dtype)
    native = {
        "graddrop": kernel.graddrop(rows, [0.1] * 5, 9, 4).double(),
        "trimmed": kernel.trimmed_mean(rows, 2).double(),
    }
    state_native, squares_native = torch.randn(7, rows.shape[1]), torch.rand(7, rows.shape[1])
    state_torch, squares_torch = state_native.clone(), squares_native.clone()
    kernel.ema_rows(rows, state_native, [6, 0, 2, 3, 1], 0.7, [1, 2, 3, 4, 5])
    w_native = kernel.excess_stats(rows, squares_native, [1, 2, 3, 4, 5])
    monkeypatch.setattr(kernel, "_rows_native", lambda grads: None)
    ulp = {torch.float32: 2e-6, torch.bfloat16: 1e-2, torch.float16: 2e-3}[dtype]
    assert _relative(native["graddrop"], kernel.graddrop(rows, [0.1] * 5, 9, 4)) <= ulp
    assert _relative(native["trimmed"], kernel.trimmed_mean(rows, 2)) <= ulp
    kernel.ema_rows(rows, state_torch, [6, 0, 2, 3, 1], 0.7, [1, 2, 3, 4, 5])
    w_torch = kernel.excess_stats(rows, squares_torch, [1, 2, 3, 4, 5])
    assert torch.allclose(state_native, state_torch, rtol=1e-6, atol=1e-6)
    assert torch.allclose(squares_native, squares_torch, rtol=1e-6)
    assert np.allclose(w_native, w_torch, rtol=1e-6)


@pytest.mark.parametrize("name", ["graddrop", "excess-mtl", "moco", "db-mtl", "sdmgrad"])
def test_state_round_trips_through_a_checkpoint(name):
    def step(method, i):
        rows = _rows(3, i)
        if method.family == "rows":
            return _ours(method, rows, _losses(3, i)).tolist()
        return method(kernel.gram(rows)).tolist()

    straight = make(name, num_tasks=3, seed=4)
    for i in range(3):
        step(straight, i)
    resumed = make(name, num_tasks=3, seed=4)
    resumed.load_state_dict(pickle.loads(pickle.dumps(straight.state_dict())))
    for i in range(3, 6):
        assert step(straight, i) == step(resumed, i)


def test_a_step_with_some_tasks_moves_only_their_state():
    moco = make("moco", num_tasks=3)
    rows = _rows(2, 0)
    out = torch.empty(rows.shape[1])
    moco.combine_rows(rows, out, [2, 0], kernel.gram(rows), np.array([1.0, 1.0]))
    assert moco.tracked[1].abs().max() == 0 and moco.tracked[0].abs().max() > 0
    assert moco.lambdas.sum() == pytest.approx(1.0) and moco.lambdas[1] == pytest.approx(1 / 3)
