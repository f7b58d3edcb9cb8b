"""MoDo against a literal oracle written from Chen et al. 2023, Algorithm 1 (LibMTL has the method,
TorchJD does not), for T = 2..8 over several steps; and the training step's double sampling:
each task's batch in two halves, each half its own row, the heads and the combination as the
whole batch's."""

import pickle

import numpy as np
import pytest
import torch
from rich.console import Console

from mtcli.core.errors import UserError
from mtcli.train.step import fold_draws, split_draws
from mtcli.weightings import aggregate, kernel, make

STEPS = 5


def _samples(num_tasks: int, step: int, n: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Two gradient samples (T, n) of the same tasks: a shared mean plus independent noise."""
    rng = np.random.default_rng(41 * num_tasks + step)
    mean = rng.normal(size=(num_tasks, n)) * np.linspace(0.5, 2.0, num_tasks)[:, None]
    mean[1:] -= 0.7 * mean[0] * rng.uniform(size=(num_tasks - 1, 1))   # some conflict
    return mean + 0.3 * rng.normal(size=mean.shape), mean + 0.3 * rng.normal(size=mean.shape)


def _simplex_by_bisection(y: np.ndarray) -> np.ndarray:
    """argmin_{x >= 0, sum x = 1} |x - y|: x = max(y - tau, 0) with tau found by bisection
    (a different algorithm from mtcli's sort-based projection)."""
    low, high = y.min() - 1.0, y.max()
    for _ in range(200):
        tau = (low + high) / 2
        low, high = (tau, high) if np.maximum(y - tau, 0).sum() > 1 else (low, tau)
    return np.maximum(y - (low + high) / 2, 0)


def _oracle(samples: list[tuple[np.ndarray, np.ndarray]], gamma: float, rho: float) -> list[np.ndarray]:
    """Algorithm 1: lambda_{t+1} = Pi(lambda_t - gamma (J1 J2^T lambda_t + rho lambda_t)); the update
    direction from lambda_{t+1} and the third sample, here the two samples' mean."""
    lam = np.full(len(samples[0][0]), 1.0 / len(samples[0][0]))
    directions = []
    for j1, j2 in samples:
        lam = _simplex_by_bisection(lam - gamma * (j1 @ (j2.T @ lam) + rho * lam))
        directions.append(((j1 + j2) / 2).T @ lam)
    return directions


def _interleaved(j1: np.ndarray, j2: np.ndarray) -> torch.Tensor:
    """Task t's samples in rows 2t and 2t + 1, float32 (what the training step's buffer holds)."""
    return torch.from_numpy(np.stack([j1, j2], axis=1).reshape(-1, j1.shape[1])).float().contiguous()


@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("gamma, rho", [(0.1, 0.0), (0.002, 0.5)])
def test_modo_equals_the_papers_algorithm_over_steps(num_tasks, gamma, rho):
    samples = [_samples(num_tasks, step) for step in range(STEPS)]
    expected = _oracle([(a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64))
                        for a, b in samples], gamma, rho)
    ours = make(f"modo:gamma={gamma},rho={rho}", num_tasks=num_tasks)
    for step, (j1, j2) in enumerate(samples):
        got = aggregate("modo", _interleaved(j1, j2), weighting=ours).double().numpy()
        assert np.linalg.norm(got - expected[step]) <= 1e-5 * np.linalg.norm(expected[step]), step


def test_modo_takes_two_rows_per_task():
    with pytest.raises(UserError, match="2 gradient samples of each task"):
        aggregate("modo", torch.randn(3, 10))
    assert make("modo", num_tasks=2).row_weights([0.25, 0.75]).tolist() == [0.125, 0.125, 0.375, 0.375]


def test_modo_state_round_trips_and_a_step_with_some_tasks_moves_only_theirs():
    straight = make("modo", num_tasks=3)
    for step in range(3):
        straight(kernel.gram(_interleaved(*_samples(3, step))))
    resumed = make("modo", num_tasks=3)
    resumed.load_state_dict(pickle.loads(pickle.dumps(straight.state_dict())))
    for step in range(3, 6):
        gram = kernel.gram(_interleaved(*_samples(3, step)))
        assert straight(gram).tolist() == resumed(gram).tolist()
    some = make("modo", num_tasks=3)
    j1, j2 = _samples(2, 0)
    some(kernel.gram(_interleaved(j1, j2)), [2, 0])
    assert some.lambdas[1] == pytest.approx(1 / 3) and some.lambdas.sum() == pytest.approx(1.0)


def test_split_draws_and_fold_draws():
    assert split_draws([0, 1, 2, 3, 4], 1) == [([0, 1, 2, 3, 4], 1.0)]
    assert split_draws([0, 1, 2, 3, 4], 2) == [([0, 2, 4], 0.6), ([1, 3], 0.4)]
    assert split_draws([7], 2) == [([7], 0.5), ([7], 0.5)]   # one row: both samples
    rows = torch.randn(6, 50, dtype=torch.float64)
    means = (rows[0::2] + rows[1::2]) / 2
    assert np.allclose(fold_draws((rows @ rows.T).numpy(), 2), (means @ means.T).numpy())


def _first_step_gradients(tmp_path, model_dir, combine, name):
    """The encoder's and heads' gradients the optimizer got at step 1, and the step's result."""
    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    config = TrainConfig(model_dir=str(model_dir), out=str(tmp_path / "runs"), name=name, batch_size=8, limit=24,
                         dropout=0.0, combine=combine, max_steps=1, clip=0.0, sampler="triple-batch")
    trainer = Trainer(config, Console(quiet=True))
    got = {}

    def capture(optimizer, args, kwargs):
        got.update({n: p.grad.detach().clone() for n, p in trainer.model.named_parameters() if p.grad is not None})

    trainer.phase.optimizer.register_step_pre_hook(capture)
    result = trainer.step(trainer.sampler.epoch_plan(1)[0], 0)
    return got, result, trainer


def test_a_modo_step_splits_each_batch_and_combines_the_halves_as_the_whole(tmp_path, tiny_model_dir):
    """With gamma = 0 the weights stay 1/T, so MoDo's combined gradient is the mean over the tasks
    of the halves' mean: the whole batch's gradient (the losses are means over even halves),
    sum's combination divided by T. Each head gets its whole batch's gradient, as under sum."""
    modo, result, trainer = _first_step_gradients(tmp_path, tiny_model_dir, "modo:gamma=0", "modo")
    plain, plain_result, _ = _first_step_gradients(tmp_path, tiny_model_dir, "sum", "sum")
    tasks = len(result.tasks)
    assert tasks == 3 and trainer.phase.grads.buffer.shape[0] == 6   # two rows per task
    shared = {n for n, _ in trainer.model.encoder.named_parameters()}
    for name, grad in plain.items():
        expected = grad / tasks if name.removeprefix("encoder.") in shared and name.startswith("encoder.") else grad
        assert torch.allclose(modo[name], expected, rtol=1e-4, atol=1e-7), name
    assert np.allclose(result.gram, plain_result.gram, rtol=1e-4)   # logged: the tasks' whole-batch Gram
    assert result.weights.tolist() == pytest.approx([1 / 3] * 3)


def test_ranks_split_each_batch_as_one_process_does():
    """Under torchrun the ranks take blocks of `draws` rows, so each rank's every-other-row split
    is part of the one-process split, and every rank holds an equal share of each sample."""
    from mtcli.train.distributed import Distributed

    batch = np.arange(100, 116)
    whole = [set(batch[subset]) for subset, _ in split_draws(list(range(16)), 2)]
    for world in (2, 4):
        shards = [Distributed(rank, world).shard(batch, 2) for rank in range(world)]
        assert sorted(np.concatenate(shards).tolist()) == batch.tolist()
        for shard in shards:
            local = split_draws(list(range(len(shard))), 2)
            assert [len(subset) for subset, _ in local] == [16 // world // 2] * 2
            assert all(set(shard[subset]) <= whole[d] for d, (subset, _) in enumerate(local))
    assert Distributed(1, 2).shard(batch).tolist() == batch[1::2].tolist()   # one draw: every other row
    with pytest.raises(UserError, match="in blocks of 2 rows"):
        Distributed(0, 2).check_batch(6, draws=2)
    Distributed(0, 1).check_batch(7, draws=2)   # one process: halves of 4 and 3 rows
