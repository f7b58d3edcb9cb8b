"""The gram-family methods that also read the task losses and scale them before the backward
(GradNorm, the IMTL hybrid), against literal oracles written from the papers' algorithms
(neither is in TorchJD): several steps over T = 2..8, the rows as the step makes them (the
gradients of the scaled losses), the kernel's Gram pass, to 1e-5 relative."""

import pickle

import numpy as np
import pytest
import torch

from mtcli.weightings import kernel, make


def _task_gradients(num_tasks: int, step: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * num_tasks + step)
    grads = torch.randn(num_tasks, 500, generator=g, dtype=torch.float64)
    return grads * torch.linspace(0.5, 3.0, num_tasks, dtype=torch.float64)[:, None]  # unequal norms


def _losses(num_tasks: int, step: int) -> torch.Tensor:
    rng = np.random.default_rng(num_tasks + 17 * step)
    return torch.tensor(rng.uniform(0.2, 2.0, num_tasks) * 0.9 ** step, dtype=torch.float64)


def _relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


GRADNORM_LR = 0.002   # the optimizer's step on w, the same SGD step on both sides


def gradnorm_oracle(num_tasks, steps, alpha=1.5, lr=GRADNORM_LR):
    """Chen et al. 2018, Algorithm 1, with autograd for the weights' gradient: each step the
    model's gradient is that of sum_i w_i L_i, and the weights move by the gradient of
    L_grad = sum_i |G_W(i) - mean(G_W) r_i^alpha| (the target held constant), then renormalise."""
    w = torch.ones(num_tasks, dtype=torch.float64, requires_grad=True)
    initial, out = None, []
    for step in range(steps):
        grads, losses = _task_gradients(num_tasks, step), _losses(num_tasks, step)
        initial = losses if initial is None else initial
        out.append((w.detach() @ grads).clone())        # the shared gradient of sum_i w_i L_i
        norms = (w[:, None] * grads).norm(dim=1)          # G_W(i)
        ratio = (losses / initial) / (losses / initial).mean()
        target = (norms.mean() * ratio ** alpha).detach()
        (dw,) = torch.autograd.grad((norms - target).abs().sum(), w)
        with torch.no_grad():
            w -= lr * dw
            w *= num_tasks / w.sum()
    return out


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_gradnorm_equals_the_papers_algorithm(num_tasks):
    ours = make("gradnorm", num_tasks=num_tasks)
    tasks = list(range(num_tasks))
    for step, expected in enumerate(gradnorm_oracle(num_tasks, steps=8)):
        grads, losses = _task_gradients(num_tasks, step), _losses(num_tasks, step)
        rows = (torch.from_numpy(ours.loss_scales())[:, None] * grads).float()   # the rows of w_k L_k
        weights = ours(kernel.gram(rows), tasks, losses.numpy())
        combined = kernel.combine(rows, weights).double()
        assert _relative(combined, expected) <= 1e-5, step
        with torch.no_grad():
            ours.w -= GRADNORM_LR * ours.w.grad


def imtl_oracle(num_tasks, steps, lr=0.1):
    """Liu et al. 2021, IMTL: losses e^s L - s; with the scaled gradients g_i, their unit vectors
    u_i, D = g_1 - g_{2..T}, U = u_1 - u_{2..T}: alpha_{2..T} = g_1 U^T (D U^T)^-1, alpha_1 =
    1 - sum; the shared gradient sum_i alpha_i g_i; s takes an SGD step on its own gradient."""
    s = torch.zeros(num_tasks, dtype=torch.float64, requires_grad=True)
    out = []
    for step in range(steps):
        raw, losses = _task_gradients(num_tasks, step), _losses(num_tasks, step)
        g = s.detach().exp()[:, None] * raw
        u = g / g.norm(dim=1, keepdim=True)
        D, U = g[:1] - g[1:], u[:1] - u[1:]
        rest = g[0] @ U.T @ torch.linalg.inv(D @ U.T)
        alpha = torch.cat([1 - rest.sum()[None], rest])
        out.append(alpha @ g)
        (ds,) = torch.autograd.grad((s.exp() * losses - s).sum(), s)
        with torch.no_grad():
            s -= lr * ds
    return out


@pytest.mark.parametrize("num_tasks", range(2, 9))
def test_imtl_equals_the_papers_closed_form(num_tasks):
    ours = make("imtl", num_tasks=num_tasks)
    tasks = list(range(num_tasks))
    for step, expected in enumerate(imtl_oracle(num_tasks, steps=6)):
        grads, losses = _task_gradients(num_tasks, step), _losses(num_tasks, step)
        rows = (torch.from_numpy(ours.loss_scales())[:, None] * grads)
        weights = ours(kernel.gram(rows.float()), tasks, losses.numpy())
        combined = torch.from_numpy(weights) @ rows
        assert _relative(combined, expected) <= 1e-5, step
        with torch.no_grad():   # the optimizer's part: the same SGD step on s
            ours.log_scale -= 0.1 * ours.log_scale.grad


@pytest.mark.parametrize("name", ["gradnorm", "imtl"])
def test_state_round_trips_through_a_checkpoint(name):
    def step(method, i):
        grads, losses = _task_gradients(3, i), _losses(3, i)
        rows = torch.from_numpy(method.loss_scales())[:, None] * grads
        weights = method((rows @ rows.T).numpy(), [0, 1, 2], losses.numpy())
        with torch.no_grad():
            for tensor in method.tensors():
                tensor -= 0.001 * tensor.grad
        return weights.tolist(), method.loss_scales().tolist()

    straight = make(name, num_tasks=3)
    for i in range(3):
        step(straight, i)
    resumed = make(name, num_tasks=3)
    resumed.load_state_dict(pickle.loads(pickle.dumps(straight.state_dict())))
    for i in range(3, 6):
        assert step(straight, i) == step(resumed, i)


def test_gradnorm_steps_with_some_tasks_move_only_theirs_and_keep_the_sum():
    ours = make("gradnorm", num_tasks=3)
    gram = np.diag([4.0, 4.0])
    for losses in ([1.0, 1.0], [0.5, 1.0]):   # task 0 trains faster: its weight falls
        ours.loss_scales()
        ours(gram, [0, 2], np.array(losses))
        with torch.no_grad():
            ours.w -= 0.1 * ours.w.grad
    w = ours.loss_scales()
    assert w.sum() == pytest.approx(3.0) and w[0] < w[2]
    assert ours.w.grad[1] == 0 and np.isnan(ours.initial[1])


def test_methods_that_read_losses_refuse_aggregate():
    from mtcli.core.errors import UserError
    from mtcli.weightings import aggregate

    with pytest.raises(UserError, match="weighs with the task losses"):
        aggregate("gradnorm", torch.randn(2, 10))
