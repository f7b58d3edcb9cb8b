"""Task samplers: which task's batch each training step sees. Torch-free, deterministic.

Each task has an endless stream of example indices: its (upsampled) index pool,
reshuffled on every pass from a seeded generator, so batches are always full and
every example is seen before any repeats. A sampler decides the task of each
*slot*; a step holds `slots_per_step` slots (by default one per task, so that
sum, weighted and PCGrad all combine the same task batches; 1 for one batch per
step). With N_i the upsampled size of task i
and B the batch size, an epoch is:

  proportional  ceil(sum_i ceil(N_i / B) / slots) steps; slot task drawn with p_i ∝ N_i
  temperature   as proportional, with p_i ∝ N_i^(1/tau) (tau=2 by default; tau=1 is
                proportional, a large tau nearly uniform: XLM-R's and mT5's sampling)
  annealed      as proportional, with p_i ∝ N_i^alpha, alpha = start + (end - start) (e - 1) / (E - 1)
                for epoch e of E (1-based); start=1, end=0.2 by default: from proportional
                towards uniform
  round-robin   tasks in turn; T * max_i ceil(N_i / B) slots, so the largest task is
                seen once and the smaller ones repeat
  triple-batch  one batch of every task per step; min_i ceil(N_i / B) steps (the
                smallest task sets the epoch)

A sampler is named as `--sampler NAME[:key=value,...]` (temperature:tau=3,
annealed:start=1.0,end=0.5), with the parameters and defaults of SAMPLERS.

The plan of epoch e depends only on (seed, e), so a resumed run gets the same
batches (the streams' positions are recomputed from the earlier epochs' draws).

Length grouping (given each row's token length): a task's rows for the epoch are cut
into megabatches of GROUP_BATCHES batches, sorted by length inside each, and the
batches of a megabatch are then shuffled. A batch then holds rows of similar length,
so little of it is padding (random batches of the bundled data are 41-49% real
tokens, grouped ones over 90%); the rows an epoch sees are the same either way.
"""

import math
from dataclasses import dataclass

import numpy as np

from mtcli.core.errors import UserError
from mtcli.core.specs import parse_spec

# Each sampler and its parameters: default, and the range a value must fall in
SAMPLERS: dict[str, dict[str, tuple[float, float, float]]] = {
    "proportional": {},
    "temperature": {"tau": (2.0, 0.01, 100.0)},
    "annealed": {"start": (1.0, 0.0, 4.0), "end": (0.2, 0.0, 4.0)},
    "round-robin": {},
    "triple-batch": {},
}


def parse_sampler(spec: str) -> tuple[str, dict[str, float]]:
    """'annealed:end=0.5' -> ('annealed', {'start': 1.0, 'end': 0.5}): the sampler's name and every
    parameter (defaults filled in), each checked; a UserError names what is wrong."""
    name, given = parse_spec(spec, "--sampler", "temperature:tau=2")
    if name not in SAMPLERS:
        raise UserError(f"--sampler {spec!r}: unknown sampler; expected one of {', '.join(SAMPLERS)} "
                        f"(with parameters as NAME:key=value, e.g. temperature:tau=2)")
    known = SAMPLERS[name]
    params = {key: default for key, (default, _, _) in known.items()}
    for key, text in given.items():
        if key not in known:
            raise UserError(f"--sampler {spec!r}: {name} has no parameter {key!r} "
                            f"(parameters: {', '.join(known) or 'none'})")
        _, low, high = known[key]
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:
            raise UserError(f"--sampler {spec!r}: {key} must be a number between {low:g} and {high:g}")
        params[key] = value
    return name, params


GROUP_BATCHES = 50  # batches per megabatch sorted by length together
MAX_POOL = 10_000_000  # rows of one task per epoch, upsampled: its index pool is held in memory


@dataclass(frozen=True)
class Slot:
    task: str
    indices: np.ndarray  # rows of that task's training split


def annealing_alpha(epoch: int, epochs: int, start: float = 1.0, end: float = 0.2) -> float:
    """alpha for 1-based `epoch` of `epochs`, from `start` to `end` (start when there is a single epoch)."""
    return start if epochs <= 1 else start + (end - start) * (epoch - 1) / (epochs - 1)


class TaskSampler:
    def __init__(self, spec: str, sizes: dict[str, int], *, batch_size: int, epochs: int, seed: int = 0,
                 upsample: dict[str, int] | None = None, slots_per_step: int = 1,
                 lengths: dict[str, np.ndarray] | None = None):
        kind, self.params = parse_sampler(spec)
        upsample = upsample or {}
        unknown = set(upsample) - set(sizes)
        if unknown:
            raise UserError(f"--upsample names unknown task(s) {', '.join(sorted(unknown))}; tasks are {', '.join(sizes)}")
        if any(int(f) != f or f < 1 for f in upsample.values()):
            raise UserError("--upsample factors must be whole numbers >= 1 (for example sst=3,para=1,sts=4)")
        if any(size < 1 for size in sizes.values()):
            raise ValueError(f"every task needs at least one row, got {sizes}")
        pools = {t: sizes[t] * int(upsample.get(t, 1)) for t in sizes}
        too_big = [t for t, n in pools.items() if n > MAX_POOL and n > sizes[t]]
        if too_big:
            t = too_big[0]
            raise UserError(f"--upsample {t}={int(upsample.get(t, 1))}: {sizes[t]:,} rows repeated make {pools[t]:,} "
                            f"per epoch; an upsampled task draws at most {MAX_POOL:,} rows per epoch: lower the "
                            f"factor")
        self.kind, self.batch_size, self.epochs, self.seed = kind, batch_size, epochs, seed
        self.tasks = list(sizes)
        self.sizes = dict(sizes)
        self.factors = {t: int(upsample.get(t, 1)) for t in self.tasks}
        self.slots_per_step = len(self.tasks) if kind == "triple-batch" else slots_per_step
        self.lengths = lengths  # token length of every row per task, for length grouping (None: off)
        if lengths is not None and any(len(lengths[t]) != sizes[t] for t in self.tasks):
            raise ValueError("lengths must give one length per row of every task")
        self._cache: dict[int, list[list[Slot]]] = {}

    # --- sizes and probabilities

    def pool_size(self, task: str) -> int:
        return self.sizes[task] * self.factors[task]

    def batches(self, task: str) -> int:
        return math.ceil(self.pool_size(task) / self.batch_size)

    def slots_per_epoch(self) -> int:
        if self.kind == "triple-batch":
            return len(self.tasks) * min(self.batches(t) for t in self.tasks)
        if self.kind == "round-robin":
            return len(self.tasks) * max(self.batches(t) for t in self.tasks)
        return sum(self.batches(t) for t in self.tasks)

    def steps_per_epoch(self) -> int:
        return math.ceil(self.slots_per_epoch() / self.slots_per_step)

    def probabilities(self, epoch: int) -> dict[str, float]:
        """Chance of each task per slot in 1-based `epoch` (exact shares for the fixed schedules)."""
        if self.kind in ("round-robin", "triple-batch"):
            return {t: 1 / len(self.tasks) for t in self.tasks}
        if self.kind == "temperature":
            alpha = 1.0 / self.params["tau"]
        elif self.kind == "annealed":
            alpha = annealing_alpha(epoch, self.epochs, self.params["start"], self.params["end"])
        else:
            alpha = 1.0
        weights = np.array([self.pool_size(t) ** alpha for t in self.tasks], dtype=np.float64)
        return dict(zip(self.tasks, weights / weights.sum()))

    # --- plans

    def _slot_tasks(self, epoch: int) -> list[str]:
        """The task of every slot of 1-based `epoch`."""
        n = self.steps_per_epoch() * self.slots_per_step
        if self.kind in ("round-robin", "triple-batch"):
            return [self.tasks[i % len(self.tasks)] for i in range(n)]
        rng = np.random.default_rng([self.seed, epoch, 0])
        p = self.probabilities(epoch)
        draws = rng.choice(len(self.tasks), size=n, p=[p[t] for t in self.tasks])
        return [self.tasks[i] for i in draws]

    def _stream(self, task: str, start: int, count: int) -> np.ndarray:
        """Positions start..start+count of the task's endless reshuffled index stream (empty when
        the epoch's draw gave the task no batch)."""
        pool = np.repeat(np.arange(self.sizes[task]), self.factors[task])
        out, position = [np.zeros(0, dtype=pool.dtype)], start
        while position < start + count:
            rounds, offset = divmod(position, len(pool))
            order = pool[np.random.default_rng([self.seed, self.tasks.index(task), rounds, 1]).permutation(len(pool))]
            take = min(len(pool) - offset, start + count - position)
            out.append(order[offset:offset + take])
            position += take
        return np.concatenate(out)

    def _group_by_length(self, task: str, epoch: int, rows: np.ndarray) -> np.ndarray:
        """Reorder an epoch's rows so that consecutive batches hold rows of similar length."""
        if self.lengths is None:
            return rows
        rng = np.random.default_rng([self.seed, self.tasks.index(task), epoch, 2])
        size, out = GROUP_BATCHES * self.batch_size, []
        for start in range(0, len(rows), size):
            chunk = rows[start:start + size]
            chunk = chunk[np.argsort(-self.lengths[task][chunk], kind="stable")]
            batches = [chunk[i:i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
            out.extend(batches[i] for i in rng.permutation(len(batches)))
        return np.concatenate(out) if out else rows[:0]

    def epoch_plan(self, epoch: int) -> list[list[Slot]]:
        """Steps of 1-based `epoch`, each a list of slots (task, batch indices)."""
        if epoch in self._cache:
            return self._cache[epoch]
        consumed = {t: 0 for t in self.tasks}
        for earlier in range(1, epoch):
            for task in self._slot_tasks(earlier):
                consumed[task] += self.batch_size
        tasks = self._slot_tasks(epoch)
        counts = {t: tasks.count(t) * self.batch_size for t in self.tasks}
        streams = {t: self._group_by_length(t, epoch, self._stream(t, consumed[t], counts[t])) for t in self.tasks}
        cursor = {t: 0 for t in self.tasks}
        slots = []
        for task in tasks:
            slots.append(Slot(task, streams[task][cursor[task]:cursor[task] + self.batch_size]))
            cursor[task] += self.batch_size
        k = self.slots_per_step
        plan = [slots[i:i + k] for i in range(0, len(slots), k)]
        self._cache = {epoch: plan}
        return plan

    def describe(self) -> str:
        shares = ", ".join(f"{t} {p:.2f}" for t, p in self.probabilities(1).items())
        grouped = ", grouped by length" if self.lengths is not None else ""
        params = ":" + ",".join(f"{k}={v:g}" for k, v in self.params.items()) if self.params else ""
        return (f"{self.kind}{params}: {self.steps_per_epoch()} steps/epoch x {self.epochs} epochs, "
                f"{self.slots_per_step} batch(es) of {self.batch_size} per step{grouped}; task shares (epoch 1): {shares}")
