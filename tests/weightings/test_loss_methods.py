"""The losses family against TorchJD's scalarizers of the same definition (torchjd.scalarization):
the scalarized value, its gradient with respect to every task's loss (the weights the step
backpropagates) and with respect to the method's own tensors, for T = 2..8 tasks over several
steps (the stateful ones updated as TorchJD updates them), to 1e-5 relative."""

import pickle

import numpy as np
import pytest
import torch

scalarization = pytest.importorskip("torchjd.scalarization")

from mtcli.weightings import WEIGHTINGS, make  # noqa: E402


def _uniform(T):
    return torch.full((T,), 1.0 / T, dtype=torch.float64)


REFERENCES = {
    "mean": lambda T: scalarization.Mean(),
    "uw": lambda T: scalarization.UW(T).double(),
    "imtl-l": lambda T: scalarization.IMTLL(T).double(),
    "gls": lambda T: scalarization.GeometricMean(),
    "rlw": lambda T: scalarization.Random(),
    "stch": lambda T: scalarization.STCH(mu=1.0),
    "pbi": lambda T: scalarization.PBI(theta=5.0, weights=_uniform(T)),
    "cosmos": lambda T: scalarization.COSMOS(lambda_=2.0, weights=_uniform(T)),
    "famo": lambda T: scalarization.FAMO(T).double(),
    "dwa": lambda T: scalarization.DWA(temperature=2.0),
}
STEPS = 6


def test_every_losses_method_has_a_reference():
    assert {n for n, cls in WEIGHTINGS.items() if cls.family == "losses"} == set(REFERENCES)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("num_tasks", range(2, 9))
@pytest.mark.parametrize("name", REFERENCES)
def test_losses_method_equals_torchjd(name, num_tasks):
    ours, theirs = make(name, num_tasks=num_tasks), REFERENCES[name](num_tasks)
    own = ours.tensors()
    their_own = list(theirs.parameters()) if name in ("uw", "imtl-l") else []
    tasks = list(range(num_tasks))
    rng = np.random.default_rng(num_tasks)
    for step in range(STEPS):
        losses = torch.tensor(rng.uniform(0.05, 3.0, num_tasks), dtype=torch.float64)
        a, b = losses.clone().requires_grad_(), losses.clone().requires_grad_()
        torch.manual_seed(step)
        if name == "rlw":
            ours.generator.manual_seed(step)  # the same draws TorchJD takes from torch's RNG
        fa, fb = ours.scalarize(a, tasks), theirs(b)
        ga = torch.autograd.grad(fa, [a, *own])
        gb = torch.autograd.grad(fb, [b, *their_own])
        assert abs(fa.item() - fb.item()) <= 1e-5 * max(1.0, abs(fb.item())), (step, fa.item(), fb.item())
        for mine, reference in zip(ga, gb):
            assert _relative(mine.double(), reference.double()) <= 1e-5, step
        with torch.no_grad():  # learnable tensors: the same SGD step on both
            for mine, reference, g_mine, g_ref in zip(own, their_own, ga[1:], gb[1:]):
                mine -= 0.1 * g_mine
                reference -= 0.1 * g_ref
        if name == "famo":  # the losses after the step's update drive the logits
            after = losses * torch.tensor(rng.uniform(0.5, 1.0, num_tasks), dtype=torch.float64)
            ours.after_step(after, tasks)
            theirs.update(after)
        if name == "dwa" and step % 2:  # epochs of two steps
            ours.end_epoch()
            theirs.step()


@pytest.mark.parametrize("name", ["uw", "dwa", "famo", "rlw", "imtl-l"])
def test_state_round_trips_through_a_checkpoint(name):
    """After restoring the state (as plain data, what trainer_state.pt holds), the same values
    and weights as the uninterrupted object, bit for bit."""
    tasks = [0, 1, 2]

    def step(method, i):
        losses = torch.tensor([0.5 + i, 1.0, 2.0 - 0.1 * i], dtype=torch.float64, requires_grad=True)
        value = method.scalarize(losses, tasks)
        (weights,) = torch.autograd.grad(value, losses)
        if method.needs_losses_after:
            method.after_step(losses.detach() * 0.9, tasks)
        method.end_epoch()
        return value.item(), weights.tolist()

    straight = make(name, num_tasks=3, seed=2)
    for i in range(3):
        step(straight, i)
    saved = pickle.loads(pickle.dumps(straight.state_dict()))
    resumed = make(name, num_tasks=3, seed=2)
    resumed.load_state_dict(saved)
    for i in range(3, 6):
        assert step(straight, i) == step(resumed, i)


def test_a_step_with_some_tasks_reads_their_part_of_the_state():
    uw = make("uw", num_tasks=3)
    with torch.no_grad():
        uw.log_var.copy_(torch.tensor([0.0, 1.0, 2.0]))
    losses = torch.tensor([1.0, 1.0], requires_grad=True)
    value = uw.scalarize(losses, [2, 0])
    assert value.item() == pytest.approx(0.5 * np.exp(-2.0) + 1.0 + 0.5)
