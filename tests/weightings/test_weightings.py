"""The weighting seam: specs as `--combine` spells them, published defaults, state that
survives a checkpoint, task subsets, and `aggregate` on every dtype."""

import copy
import pickle

import numpy as np
import pytest
import torch

from mtcli.core.errors import UserError
from mtcli.weightings import WEIGHTINGS, aggregate, check_spec, kernel, make

STATEFUL = ("pcgrad", "gradvac", "nash-mtl", "cr-mogm", "rgw")  # gradnorm, imtl: test_loss_reading_gram.py


def _gram(num_tasks: int, seed: int) -> np.ndarray:
    g = torch.randn(num_tasks, 300, generator=torch.Generator().manual_seed(seed))
    g[1:] -= 1.2 * g[0]
    return kernel.gram(g.contiguous())


def test_published_defaults():
    assert make("cagrad", num_tasks=3).c == 0.4
    assert make("gradvac", num_tasks=3).beta == 0.01
    assert make("fairgrad", num_tasks=3).alpha == 1.0
    nash = make("nash-mtl", num_tasks=3)
    assert (nash.max_norm, nash.update_weights_every, nash.optim_niter) == (1.0, 1, 20)
    assert (make("mgda", num_tasks=3).epsilon, make("mgda", num_tasks=3).max_iters) == (0.001, 100)


def test_specs_set_parameters_with_their_types():
    w = make("cagrad:c=0.2", num_tasks=3)
    assert w.c == 0.2 and w.spec == "cagrad:c=0.2,norm_eps=0.0001"
    assert make("NASH-MTL:optim-niter=5", num_tasks=2).optim_niter == 5
    assert make("gradvac", num_tasks=2, beta=0.5).beta == 0.5          # keyword params, as aggregate() passes them
    for name in WEIGHTINGS:
        check_spec(name if name != "weighted" else "weighted")


@pytest.mark.parametrize("spec, message", [
    ("pcgard", "unknown weighting; pick one of sum, weighted, pcgrad"),
    ("cagrad:c", "expected NAME or NAME:key=value"),
    ("cagrad:radius=1", "cagrad has no parameter 'radius' (parameters: c, norm_eps)"),
    ("cagrad:c=big", "c must be a number"),
    ("nash-mtl:optim_niter=2.5", "optim_niter must be a whole number"),
    ("cagrad:c=-1", "c=-1.0 must be a finite number >= 0"),
    ("gradvac:beta=2", "beta=2.0 must be between 0 and 1"),
    ("aligned-mtl:scale=max", "scale=max must be one of min, median, rmse"),
    # every parameter declares its range, checked before anything runs (hostile-inputs issue, point 8)
    ("cagrad:c=nan", "c=nan must be a finite number"),
    ("cagrad:c=inf", "c=inf must be a finite number"),
    ("fairgrad:alpha=nan", "alpha=nan must be a finite number"),
    ("fairgrad:alpha=-1", "alpha=-1.0 must be a finite number >= 0"),
    ("mgda:max_iters=-5", "max_iters=-5 must be between 1 and 1000000"),
    ("mgda:epsilon=nan", "epsilon=nan must be a finite number"),
    ("mgda:epsilon=-1", "epsilon=-1.0 must be a finite number >= 0"),
    ("nash-mtl:max_norm=nan", "max_norm=nan must be a finite number"),
    ("cagrad:norm_eps=-1", "norm_eps=-1.0 must be a finite number >= 0"),
    ("cagrad:c=1,c=2", "c is given twice; give each parameter once"),
    ("weighted:task_weights=1", "task_weights is not set in the spec; it comes from --task-weights"),
    ("pcgrad:seed=4", "seed is not set in the spec; it comes from --seed"),
])
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        check_spec(spec)


@pytest.mark.parametrize("name", STATEFUL)
def test_state_round_trips_through_a_checkpoint(name):
    """Weights after restoring the state (pickled, as trainer_state.pt holds it) equal the
    weights of the uninterrupted object, bit for bit."""
    straight = make(name, num_tasks=4, seed=3)
    for seed in range(3):
        straight(_gram(4, seed))
    saved = pickle.loads(pickle.dumps(straight.state_dict()))
    resumed = make(name, num_tasks=4, seed=3)
    resumed.load_state_dict(saved)
    for seed in range(3, 6):
        assert np.array_equal(straight(_gram(4, seed)), resumed(_gram(4, seed)))


def test_stateless_weightings_refuse_foreign_state():
    with pytest.raises(ValueError, match="keeps no state"):
        make("upgrad", num_tasks=2).load_state_dict({"alpha": [1.0]})


def test_state_is_kept_per_task_of_the_run():
    """A step with tasks 2 and 0 reads and updates their part of the state only."""
    gradvac = make("gradvac", num_tasks=3, beta=0.5)
    gradvac(_gram(2, 0), tasks=[2, 0])
    touched = gradvac.targets != 0
    assert touched[2, 0] and touched[0, 2] and not touched[1].any() and not touched[:, 1].any()
    nash = make("nash-mtl", num_tasks=3)
    nash(_gram(2, 1), tasks=[1, 2])
    assert nash.alpha[0] == 1.0 and nash.alpha[1] != 1.0
    weighted = make("weighted", num_tasks=3, task_weights=(0.5, 1.0, 2.0))
    assert weighted(_gram(2, 2), tasks=[2, 0]).tolist() == [2.0, 0.5]
    with pytest.raises(ValueError, match="do not index"):
        weighted(_gram(2, 2), tasks=[3, 0])


def test_shuffles_follow_the_seed():
    a, b, c = (make("pcgrad", num_tasks=5, seed=s) for s in (1, 1, 2))
    grams = [_gram(5, s) for s in range(6)]
    wa, wb, wc = ([w(g) for g in grams] for w in (a, b, c))
    assert all(np.array_equal(x, y) for x, y in zip(wa, wb))
    assert any(not np.array_equal(x, y) for x, y in zip(wa, wc))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", [n for n, cls in WEIGHTINGS.items() if n != "weighted" and cls.family != "losses"
                                  and not getattr(cls, "reads_losses", False)])
def test_aggregate_takes_every_dtype(name, dtype):
    g = torch.randn(4, 5000, generator=torch.Generator().manual_seed(0))
    g[1] -= 1.3 * g[0]
    buffer = g.to(dtype).contiguous()
    out = aggregate(name, buffer)
    assert out.dtype == dtype and out.shape == (5000,)
    weighting = make(name, num_tasks=4 // WEIGHTINGS[name].draws)   # MoDo: two rows (samples) per task
    if weighting.family == "rows":  # the native pass against the same pass in float64 (test_rows_methods.py)
        weighting.combine_rows(buffer.double(), expected := torch.empty(5000, dtype=torch.float64), [0, 1, 2, 3],
                               kernel.gram(buffer), None)
    else:
        expected = torch.from_numpy(weighting.row_weights(weighting(kernel.gram(buffer)))) @ buffer.double()
    if name not in STATEFUL:  # a fresh object gives the same weights again
        tolerance = {torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}[dtype]
        assert (out.double() - expected).abs().max() <= tolerance * expected.abs().max()


def test_aggregate_keeps_state_in_the_weighting_it_is_given():
    g = torch.randn(3, 1000, generator=torch.Generator().manual_seed(1))
    weighting = make("gradvac", num_tasks=3, beta=0.5)
    before = copy.deepcopy(weighting.targets)
    aggregate("gradvac", g, weighting=weighting)
    assert not np.array_equal(before, weighting.targets)
