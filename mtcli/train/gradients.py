"""Per-task gradients of the shared encoder, without copies, and their combination.

During task k's backward pass every shared parameter's `.grad` is a view into row k
of one contiguous (T, n) buffer, so autograd accumulates each task's gradient
straight into its row. The weighted combination is then written into a second flat
buffer of n, whose views become the `.grad` the optimizer reads. Nothing is
concatenated or allocated per step. Head parameters are not in the buffer: each head
only ever receives its own task's gradient.
"""

import torch

from mtcli.weightings import kernel


def _views(flat: torch.Tensor, params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    views, offset = [], 0
    for p in params:
        views.append(flat[offset:offset + p.numel()].view_as(p))
        offset += p.numel()
    return views


class TaskGradients:
    def __init__(self, params: list[torch.nn.Parameter], num_tasks: int):
        self.params = params
        n = sum(p.numel() for p in params)
        like = params[0]
        self.buffer = torch.zeros(num_tasks, n, dtype=like.dtype, device=like.device)
        self.combined = torch.zeros(n, dtype=like.dtype, device=like.device)
        self._rows = [_views(self.buffer[k], params) for k in range(num_tasks)]
        self._out = _views(self.combined, params)
        self._used = 0

    @property
    def size(self) -> int:
        return self.buffer.shape[1]

    def used_rows(self) -> torch.Tensor:
        """The rows written this step, as one contiguous view (what the kernel and all-reduce read)."""
        return self.buffer[: self._used]

    def begin(self, row: int) -> None:
        """Route the next backward pass's shared-parameter gradients into `row`."""
        for p, view in zip(self.params, self._rows[row]):
            p.grad = view
        self._used = max(self._used, row + 1)

    def scale_row(self, row: int, factor: float) -> None:
        """Row `row` times `factor` (a loss part backpropagated at its share of the batch, back to
        the part's own gradient)."""
        self.buffer[row].mul_(factor)

    def combine(self, weights) -> None:
        """sum_k weights[k] * row_k into the combined buffer, which becomes the parameters' `.grad`."""
        kernel.combine(self.used_rows(), weights, out=self.combined)
        self._use_combined()

    def combine_rows(self, method, *args):
        """A rows-family method writes the combined buffer from the rows (its own passes); it
        becomes the parameters' `.grad`. Returns what the method returns."""
        result = method.combine_rows(self.used_rows(), self.combined, *args)
        self._use_combined()
        return result

    def _use_combined(self) -> None:
        for p, view in zip(self.params, self._out):
            p.grad = view

    def reset(self) -> None:
        self.buffer[: self._used].zero_()
        self._used = 0
