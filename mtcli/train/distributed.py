"""Multi-process training under torchrun: PyTorch's own distributed stack.

`torchrun --nproc-per-node N -m mtcli train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
this module turns them into a process group (NCCL on GPUs, gloo on CPUs) and the few
collectives the trainer needs. Every rank draws the same seeded sampler plan and takes
its own slice of every batch (`--batch-size` is the global batch). Rank 0's initial
weights are broadcast once; after the task backward passes the contiguous (T, n) buffer
of task gradients (plus the heads' gradients) is averaged in one collective, so every
rank computes the same Gram matrix and the same weights, whatever the weighting, and
applies the identical update: T·n values cross the network per step instead of DDP's n.
"""

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from mtcli.core.errors import UserError


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls, use_cuda: bool) -> "Distributed":
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        else:  # ranks on one machine share its cores
            local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if use_cuda else "gloo")
        return cls(rank, world, local_rank)

    def check_batch(self, batch_size: int, draws: int = 1) -> None:
        """The global batch divides evenly over the processes (in blocks of `draws` rows: see shard)."""
        if self.world > 1 and batch_size % (self.world * draws):
            per = f" in blocks of {draws} rows (the method's samples of each task)" if draws > 1 else ""
            raise UserError(f"--batch-size {batch_size} is the global batch: it must divide evenly over "
                            f"{self.world} processes{per}")

    def shard(self, indices, block: int = 1):
        """This rank's rows of a global batch: blocks of `block` consecutive rows dealt to the ranks
        in turn (block 1: every world-th row). A method that splits each task's rows into `block`
        samples, every block-th row each (MoDo), then finds on every rank the same split as one
        process on the whole batch, and every rank holds an equal share of each sample."""
        if not self.enabled:
            return indices
        return indices[(np.arange(len(indices)) // block) % self.world == self.rank]

    def share(self, count: int, rank: int | None = None) -> slice:
        """This rank's (or `rank`'s) contiguous share of `count` rows (work done once over all
        ranks, such as a teacher's labelling; gather_shares puts the parts together)."""
        rank = self.rank if rank is None else rank
        return slice(rank * count // self.world, (rank + 1) * count // self.world)

    def gather_shares(self, part: np.ndarray, count: int, device) -> np.ndarray:
        """Every rank's `part` (its share of `count` rows of one float array), concatenated in rank
        order, on every rank: what one process computing all the rows would hold (as float32)."""
        part = np.asarray(part, dtype=np.float32)
        if not self.enabled:
            return part
        sizes = [s.stop - s.start for s in (self.share(count, r) for r in range(self.world))]
        padded = torch.zeros((max(sizes), *part.shape[1:]), dtype=torch.float32, device=device)
        padded[:len(part)] = torch.from_numpy(part)
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        return np.concatenate([p[:n].cpu().numpy() for p, n in zip(parts, sizes)])

    def average_(self, tensors: list[torch.Tensor]) -> None:
        """All-reduce the mean of tensors in place, in one collective (a single tensor goes as is)."""
        if not self.enabled or not tensors:
            return
        if len(tensors) == 1:
            dist.all_reduce(tensors[0])
            tensors[0].div_(self.world)
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat.div_(self.world)
        offset = 0
        for t in tensors:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()

    def broadcast_(self, tensors: list[torch.Tensor]) -> None:
        """Overwrite tensors on every rank with rank 0's."""
        if self.enabled:
            for t in tensors:
                dist.broadcast(t, src=0)

    def all_true(self, flag: bool, device) -> bool:
        """True on every rank iff `flag` is true on every rank."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0.5)

    def any_true(self, flag: bool, device) -> bool:
        """True on every rank iff `flag` is true on some rank."""
        return not self.all_true(not flag, device) if self.enabled else flag

    def max_parameter_divergence(self, parameters: list[torch.Tensor]) -> float:
        """Largest |p_rank - p_rank0| over all parameters and ranks (0.0: identical everywhere)."""
        if not self.enabled:
            return 0.0
        flat = torch.cat([p.detach().reshape(-1).float() for p in parameters])
        reference = flat.clone()
        dist.broadcast(reference, src=0)
        divergence = (flat - reference).abs().max().reshape(1)
        dist.all_reduce(divergence, op=dist.ReduceOp.MAX)
        return float(divergence.item())

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
