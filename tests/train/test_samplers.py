"""Task samplers against their definitions: frequencies, epoch lengths, determinism."""

import math
from collections import Counter

import numpy as np
import pytest

from mtcli.core.errors import UserError
from mtcli.train.samplers import TaskSampler, annealing_alpha

SIZES = {"sst": 8544, "para": 13212, "sts": 6040}


def _task_counts(plan) -> Counter:
    return Counter(slot.task for step in plan for slot in step)


def test_annealing_alpha_formula():
    assert annealing_alpha(1, 5) == 1.0
    assert annealing_alpha(5, 5) == pytest.approx(0.2)
    assert annealing_alpha(3, 5) == pytest.approx(1 - 0.8 * 2 / 4)
    assert annealing_alpha(1, 1) == 1.0


def test_temperature_follows_sizes_to_the_power_one_over_tau():
    for tau in (1.0, 2.0, 5.0):
        sampler = TaskSampler(f"temperature:tau={tau}", SIZES, batch_size=8, epochs=2, seed=3)
        weights = {t: n ** (1 / tau) for t, n in SIZES.items()}
        expected = {t: w / sum(weights.values()) for t, w in weights.items()}
        for epoch in (1, 2):  # the same shares every epoch
            assert sampler.probabilities(epoch) == pytest.approx(expected)
        plan = sampler.epoch_plan(1)
        counts, total = _task_counts(plan), len(plan)
        for task, p in expected.items():
            assert abs(counts[task] / total - p) < 4 * math.sqrt(p * (1 - p) / total)
    proportional = TaskSampler("proportional", SIZES, batch_size=8, epochs=1, seed=3)
    assert TaskSampler("temperature:tau=1", SIZES, batch_size=8, epochs=1, seed=3).probabilities(1) == \
        pytest.approx(proportional.probabilities(1))


def test_annealed_takes_its_start_and_end():
    sampler = TaskSampler("annealed:start=0.5,end=0", SIZES, batch_size=8, epochs=3, seed=0)
    for epoch, alpha in ((1, 0.5), (2, 0.25), (3, 0.0)):
        weights = {t: n ** alpha for t, n in SIZES.items()}
        assert sampler.probabilities(epoch) == pytest.approx({t: w / sum(weights.values()) for t, w in weights.items()})
    assert "annealed:start=0.5,end=0" in sampler.describe()
    # the defaults are the documented schedule
    default = TaskSampler("annealed", SIZES, batch_size=8, epochs=5, seed=0)
    assert default.params == {"start": 1.0, "end": 0.2}


@pytest.mark.parametrize("spec, message", [
    ("temperature:tau=0", "tau must be a number between 0.01 and 100"),
    ("temperature:tau=nan", "tau must be a number between"),
    ("temperature:tau=abc", "tau must be a number between"),
    ("temperature:t=2", "temperature has no parameter 't' (parameters: tau)"),
    ("proportional:tau=2", "proportional has no parameter 'tau' (parameters: none)"),
    ("annealed:start", "expected NAME or NAME:key=value"),
    ("annealed:end=0.1,end=0.2", "end is given twice"),
    ("softmax", "unknown sampler; expected one of proportional, temperature, annealed"),
])
def test_sampler_specs_are_checked(spec, message):
    with pytest.raises(UserError, match="^--sampler .*" + message.replace("(", r"\(").replace(")", r"\)")):
        TaskSampler(spec, SIZES, batch_size=8, epochs=1)


def test_proportional_frequencies_follow_dataset_sizes():
    sampler = TaskSampler("proportional", SIZES, batch_size=8, epochs=1, seed=0)
    plan = sampler.epoch_plan(1)
    assert len(plan) == sum(math.ceil(n / 8) for n in SIZES.values())
    counts, total = _task_counts(plan), len(plan)
    for task, n in SIZES.items():
        expected = n / sum(SIZES.values())
        # binomial standard error over ~3.5k draws is < 0.009; allow 4 sigma
        assert abs(counts[task] / total - expected) < 4 * math.sqrt(expected * (1 - expected) / total)


def test_annealed_frequencies_move_towards_uniform():
    epochs = 3
    sampler = TaskSampler("annealed", SIZES, batch_size=8, epochs=epochs, seed=1)
    for epoch in range(1, epochs + 1):
        alpha = annealing_alpha(epoch, epochs)
        weights = {t: n ** alpha for t, n in SIZES.items()}
        plan = sampler.epoch_plan(epoch)
        counts, total = _task_counts(plan), len(plan)
        for task, w in weights.items():
            expected = w / sum(weights.values())
            assert sampler.probabilities(epoch)[task] == pytest.approx(expected)
            assert abs(counts[task] / total - expected) < 4 * math.sqrt(expected * (1 - expected) / total)
    last = sampler.probabilities(epochs)
    assert max(last.values()) - min(last.values()) < 0.1  # alpha = 0.2: nearly uniform


def test_round_robin_cycles_tasks_until_the_largest_is_seen():
    sampler = TaskSampler("round-robin", SIZES, batch_size=32, epochs=1, seed=0)
    plan = sampler.epoch_plan(1)
    tasks = [slot.task for step in plan for slot in step]
    assert tasks[:6] == ["sst", "para", "sts"] * 2
    largest = math.ceil(13212 / 32)
    assert _task_counts(plan) == {t: largest for t in SIZES}
    para_rows = np.concatenate([s.indices for step in plan for s in step if s.task == "para"])
    assert set(para_rows.tolist()) == set(range(13212))  # every para example seen in the epoch


def test_triple_batch_has_one_batch_of_each_task_per_step():
    sampler = TaskSampler("triple-batch", SIZES, batch_size=32, epochs=2, seed=0)
    plan = sampler.epoch_plan(1)
    assert len(plan) == sampler.steps_per_epoch() == math.ceil(6040 / 32)
    for step in plan:
        assert sorted(s.task for s in step) == ["para", "sst", "sts"]
        assert all(len(s.indices) == 32 for s in step)


def test_streams_see_every_example_before_repeating():
    sampler = TaskSampler("triple-batch", {"a": 100, "b": 1000}, batch_size=10, epochs=3, seed=0)
    rows = [np.concatenate([s.indices for step in sampler.epoch_plan(e) for s in step if s.task == "b"]) for e in (1, 2, 3)]
    seen = np.concatenate(rows)  # 3 epochs x 10 batches of b: 300 of its 1000 rows, no repeats yet
    assert len(set(seen.tolist())) == len(seen) == 300


def test_plans_are_reproducible_and_resumable():
    first = TaskSampler("annealed", SIZES, batch_size=16, epochs=3, seed=7, slots_per_step=3)
    again = TaskSampler("annealed", SIZES, batch_size=16, epochs=3, seed=7, slots_per_step=3)
    again.epoch_plan(1)
    for a, b in zip(first.epoch_plan(2), again.epoch_plan(2)):  # epoch 2 alone equals epoch 2 after epoch 1
        assert [s.task for s in a] == [s.task for s in b]
        assert all(np.array_equal(x.indices, y.indices) for x, y in zip(a, b))
    other = TaskSampler("annealed", SIZES, batch_size=16, epochs=3, seed=8, slots_per_step=3)
    assert [s.task for s in other.epoch_plan(1)[0]] != [s.task for s in first.epoch_plan(1)[0]] or \
        not np.array_equal(other.epoch_plan(1)[0][0].indices, first.epoch_plan(1)[0][0].indices)


def test_slots_per_step_groups_draws():
    sampler = TaskSampler("proportional", SIZES, batch_size=32, epochs=1, seed=0, slots_per_step=3)
    plan = sampler.epoch_plan(1)
    assert len(plan) == math.ceil(sum(math.ceil(n / 32) for n in SIZES.values()) / 3)
    assert all(len(step) == 3 for step in plan[:-1])


def test_upsample_repeats_datasets():
    sampler = TaskSampler("proportional", SIZES, batch_size=32, epochs=1, seed=0, upsample={"sst": 3, "sts": 4})
    assert sampler.pool_size("sst") == 3 * 8544 and sampler.pool_size("para") == 13212
    p = sampler.probabilities(1)
    assert p["sts"] == pytest.approx(4 * 6040 / (3 * 8544 + 13212 + 4 * 6040))
    with pytest.raises(UserError, match="whole numbers"):
        TaskSampler("proportional", SIZES, batch_size=32, epochs=1, upsample={"sst": 0})
    with pytest.raises(UserError, match="unknown task"):
        TaskSampler("proportional", SIZES, batch_size=32, epochs=1, upsample={"imdb": 2})


def _lengths(sizes, seed=0):
    rng = np.random.default_rng(seed)  # long-tailed like real sentences: mostly short, a few long
    return {t: np.minimum(128, 5 + rng.gamma(2.0, 12.0, size=n).astype(np.int64)) for t, n in sizes.items()}


def _padding_efficiency(plan, lengths) -> float:
    real = padded = 0
    for step in plan:
        for slot in step:
            batch = lengths[slot.task][slot.indices]
            real, padded = real + batch.sum(), padded + batch.max() * len(batch)
    return real / padded


@pytest.mark.parametrize("kind", ["proportional", "triple-batch"])
def test_length_grouping_keeps_the_rows_and_cuts_padding(kind):
    lengths = _lengths(SIZES)
    plain = TaskSampler(kind, SIZES, batch_size=32, epochs=2, seed=3, slots_per_step=3)
    grouped = TaskSampler(kind, SIZES, batch_size=32, epochs=2, seed=3, slots_per_step=3, lengths=lengths)
    for epoch in (1, 2):
        a, b = plain.epoch_plan(epoch), grouped.epoch_plan(epoch)
        assert [[s.task for s in step] for step in a] == [[s.task for s in step] for step in b]  # same task draws
        for task in SIZES:
            rows_a = np.concatenate([s.indices for step in a for s in step if s.task == task])
            rows_b = np.concatenate([s.indices for step in b for s in step if s.task == task])
            assert sorted(rows_a.tolist()) == sorted(rows_b.tolist())  # the same rows, regrouped
        assert _padding_efficiency(a, lengths) < 0.6
        assert _padding_efficiency(b, lengths) > 0.9


def test_length_grouped_plans_are_reproducible_and_shuffled():
    lengths = _lengths(SIZES)
    first = TaskSampler("annealed", SIZES, batch_size=16, epochs=3, seed=7, slots_per_step=3, lengths=lengths)
    again = TaskSampler("annealed", SIZES, batch_size=16, epochs=3, seed=7, slots_per_step=3, lengths=lengths)
    again.epoch_plan(1)
    for a, b in zip(first.epoch_plan(2), again.epoch_plan(2)):  # what --resume relies on
        assert all(np.array_equal(x.indices, y.indices) for x, y in zip(a, b))
    # batches are not handed out longest first: their order inside a megabatch is shuffled
    maxima = [lengths["para"][s.indices].max() for step in first.epoch_plan(1) for s in step if s.task == "para"]
    assert maxima[:50] != sorted(maxima[:50], reverse=True)
    with pytest.raises(ValueError, match="one length per row"):
        TaskSampler("proportional", SIZES, batch_size=16, epochs=1, lengths={t: np.ones(3) for t in SIZES})


# ---------------------------------------------------------------- any task sizes (hostile-inputs issue, point 3)

from hypothesis import given, settings
from hypothesis import strategies as st

from mtcli.train.samplers import SAMPLERS


@settings(max_examples=150, deadline=None)
@given(kind=st.sampled_from(list(SAMPLERS) + ["temperature:tau=0.5", "annealed:start=0,end=2"]), sizes=st.lists(st.integers(1, 70), min_size=1, max_size=5),
       batch=st.integers(1, 40), epochs=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       grouped=st.booleans(), slots=st.integers(1, 6))
def test_every_sampler_plans_every_epoch_for_any_task_sizes(kind, sizes, batch, epochs, seed, grouped, slots):
    """Tiny tasks next to big ones (a 1-row task, an epoch whose draw gives a task no batch):
    every step's slots hold full batches of that task's own rows, and epochs replay exactly."""
    names = [f"t{i}" for i in range(len(sizes))]
    sizes_by_task = dict(zip(names, sizes))
    lengths = {t: np.arange(n) % 7 for t, n in sizes_by_task.items()} if grouped else None
    sampler = TaskSampler(kind, sizes_by_task, batch_size=batch, epochs=epochs, seed=seed,
                          slots_per_step=min(slots, len(names)), lengths=lengths)
    for epoch in range(1, epochs + 1):
        plan = sampler.epoch_plan(epoch)
        assert len(plan) == sampler.steps_per_epoch() >= 1
        for step in plan:
            for slot in step:
                assert len(slot.indices) == batch
                assert slot.indices.min() >= 0 and slot.indices.max() < sizes_by_task[slot.task]
    again = TaskSampler(kind, sizes_by_task, batch_size=batch, epochs=epochs, seed=seed,
                        slots_per_step=min(slots, len(names)), lengths=lengths)
    replay = again.epoch_plan(epochs)
    assert [[(s.task, s.indices.tolist()) for s in step] for step in replay] == \
        [[(s.task, s.indices.tolist()) for s in step] for step in sampler.epoch_plan(epochs)]


def test_a_20_row_task_next_to_sst_trains_on_every_seed():
    """The case the issue measured: 55% of seeds crashed with 'need at least one array'."""
    for seed in range(60):
        for kind in ("proportional", "annealed"):
            sampler = TaskSampler(kind, {"sst": 8544, "tiny": 20}, batch_size=32, epochs=3, seed=seed, slots_per_step=2)
            for epoch in (1, 2, 3):
                sampler.epoch_plan(epoch)


def test_an_upsample_that_cannot_fit_in_memory_is_refused_up_front():
    with pytest.raises(UserError, match=r"--upsample tickets=1000000000: 20 rows repeated make 20,000,000,000"):
        TaskSampler("proportional", {"tickets": 20, "sst": 100}, batch_size=8, epochs=1, upsample={"tickets": 10**9})
