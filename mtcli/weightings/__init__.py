"""Multitask methods, grouped by what they read of a step (mtcli.weightings.base): the task
losses (one backward of a weighted loss sum), the T x T Gram matrix of the task gradients
(two fused kernel passes over the (T, n) buffer, `kernel.gram` then `kernel.combine`, with
T x T host arithmetic in between), or the gradients coordinate by coordinate (fused kernel
passes). `--combine NAME[:key=value,...]` picks one for training; `aggregate` is the same
gradient combination for code that trains outside mtcli (gram and rows families):

    from mtcli.weightings import aggregate
    g = aggregate("upgrad", grads)            # grads: (T, n) tensor, CPU or CUDA, fp32/bf16/fp16
    g = aggregate("cagrad", grads, c=0.4)
"""

from __future__ import annotations

from typing import Sequence

from mtcli.core.errors import UserError
from mtcli.weightings.aligned_mtl import AlignedMTL
from mtcli.weightings.base import LossWeighting, Method, RowsWeighting, Weighting, cast_params, parameters, parse_spec
from mtcli.weightings.cagrad import CAGrad
from mtcli.weightings.constant import Sum, Weighted
from mtcli.weightings.dualproj import DualProj
from mtcli.weightings.fairgrad import FairGrad
from mtcli.weightings.gradvac import GradVac
from mtcli.weightings.imtl_g import IMTLG
from mtcli.weightings.mgda import MGDA
from mtcli.weightings.nash_mtl import NashMTL
from mtcli.weightings.pcgrad import PCGrad
from mtcli.weightings.upgrad import UPGrad
from mtcli.weightings.mean import Mean
from mtcli.weightings.uw import UW
from mtcli.weightings.dwa import DWA
from mtcli.weightings.gls import GLS
from mtcli.weightings.rlw import RLW
from mtcli.weightings.famo import FAMO
from mtcli.weightings.stch import STCH
from mtcli.weightings.imtl_l import IMTLL
from mtcli.weightings.pbi import PBI
from mtcli.weightings.cosmos import COSMOS
from mtcli.weightings.config import ConFIG
from mtcli.weightings.cr_mogm import CRMOGM
from mtcli.weightings.krum import Krum
from mtcli.weightings.rgw import RGW
from mtcli.weightings.gradnorm import GradNorm
from mtcli.weightings.imtl import IMTL
from mtcli.weightings.sdmgrad import SDMGrad
from mtcli.weightings.modo import MoDo
from mtcli.weightings.graddrop import GradDrop
from mtcli.weightings.trimmed_mean import TrimmedMean
from mtcli.weightings.excess_mtl import ExcessMTL
from mtcli.weightings.moco import MoCo
from mtcli.weightings.db_mtl import DBMTL

WEIGHTINGS: dict[str, type[Method]] = {cls.name: cls for cls in (
    # gram: weights from the Gram matrix of the task gradients
    Sum, Weighted, PCGrad, MGDA, CAGrad, NashMTL, IMTLG, AlignedMTL, UPGrad, DualProj, GradVac, FairGrad,
    ConFIG, CRMOGM, Krum, RGW, GradNorm, IMTL, SDMGrad, MoDo,
    # rows: the task gradients coordinate by coordinate, or state the size of the gradients
    GradDrop, TrimmedMean, ExcessMTL, MoCo, DBMTL,
    # losses: a scalarization of the task losses, one backward
    Mean, UW, DWA, GLS, RLW, FAMO, STCH, IMTLL, PBI, COSMOS)}


def spec_name(spec: str) -> str:
    return parse_spec(spec)[0]


def check_spec(spec: str) -> None:
    """Raise UserError unless `spec` names a weighting with parameters it has, of the right types."""
    name, params = parse_spec(spec)
    if name not in WEIGHTINGS:
        raise UserError(f"--combine {spec!r}: unknown weighting; pick one of {', '.join(WEIGHTINGS)}")
    make(spec, num_tasks=1, task_weights=(1.0,))


def make(spec: str, *, num_tasks: int, task_weights: Sequence[float] | None = None, seed: int = 0,
         **params) -> Weighting:
    """The weighting `spec` ('name' or 'name:key=value,...', or a name and keyword params) for a run
    of `num_tasks` tasks. task_weights feed `weighted`; seed seeds the methods that shuffle."""
    name, spec_params = parse_spec(spec)
    cls = WEIGHTINGS.get(name)
    if cls is None:
        raise UserError(f"--combine {spec!r}: unknown weighting; pick one of {', '.join(WEIGHTINGS)}")
    values = {**cast_params(cls, spec_params, spec), **cast_params(cls, params, spec, from_spec=False)}
    fields = parameters(cls)
    if "task_weights" in fields:
        values.setdefault("task_weights", None if task_weights is None else tuple(float(w) for w in task_weights))
    if "seed" in fields:
        values.setdefault("seed", seed)
    try:
        return cls(num_tasks=num_tasks, **values)
    except ValueError as e:
        raise UserError(f"--combine {spec!r}: {e}") from None


def aggregate(name: str, grads, *, out=None, weighting: Weighting | None = None, **params):
    """sum_k w_k grads[k] with the weights of `name` (a `--combine` spec) for a (T, n) tensor.

    Two passes of the fused kernel (Gram, combine) and T x T host work. Pass `weighting`
    (from `make`) to keep a stateful method's state (GradVac, Nash-MTL, the shuffles) across
    calls; `out` (n,) receives the result in the gradients' dtype. A method that takes several
    gradient samples of each task (MoDo: 2) reads T * draws rows, task t's samples in rows
    t * draws .. t * draws + draws - 1."""
    import torch

    from mtcli.weightings import kernel

    cls = type(weighting) if weighting is not None else WEIGHTINGS.get(parse_spec(name)[0])
    draws = cls.draws if cls is not None else 1   # (an unknown name: make says so below)
    if grads.shape[0] % draws:
        raise UserError(f"{name} takes {draws} gradient samples of each task: pass {draws} rows per task "
                        f"(task t's in rows {draws}t..{draws}t+{draws - 1}), got {grads.shape[0]} rows")
    if weighting is None:
        weighting = make(name, num_tasks=grads.shape[0] // draws, **params)
    if weighting.family == "losses" or weighting.reads_losses:
        raise UserError(f"{weighting.name} weighs with the task losses (train with --combine {weighting.name}); "
                        f"aggregate combines task gradients alone")
    gram = kernel.gram(grads)
    if weighting.family == "rows":
        if out is None:
            out = torch.empty(grads.shape[1], dtype=grads.dtype, device=grads.device)
        weighting.combine_rows(grads, out, list(range(grads.shape[0])), gram, None)
        return out
    return kernel.combine(grads, weighting.row_weights(weighting(gram)), out)


__all__ = ["WEIGHTINGS", "LossWeighting", "Method", "RowsWeighting", "Weighting", "aggregate", "make", "check_spec", "parameters",
           "spec_name"]
