"""Settle oneMKL's vector-math dispatch on one thread, before any op runs on several.

torch on CPU hands contiguous float unary ops (sqrt, exp, log, erf, tanh, ...) to oneMKL's
vector math library (VML), each intra-op thread on its chunk. oneMKL 2024.2 (the one in
torch 2.13's build) resolves each VML function's kernel on that function's first call; when
the first call runs on several threads at once, one thread can run a low-accuracy kernel for
its whole chunk of that call (pytorch/pytorch#188792; fixed upstream by the same warm-up as
here). In mtcli that first call was AdamW's sqrt over the word embeddings in step 1: about
one training process in thirty on a loaded 2-core machine computed a first update off by up
to 3.7e-4 relative on the main thread's half of the rows (bit for bit what oneMKL's AVX2
low-accuracy sqrt, VML_EP, gives there), so two runs of one seed, or a run and its resume,
were no longer bit-identical. One call of each function on one element runs on the
calling thread alone and settles its dispatch for the process.
"""

from functools import cache

import torch

# The torch ops whose float32 and float64 kernels call VML (vms*/vmd* in libtorch_cpu)
VML_OPS = ("acos", "asin", "atan", "cos", "erf", "erfinv", "erfc", "exp", "log", "log10", "log2", "sin", "sqrt",
           "tan", "tanh", "trunc")


@cache
def settle_vml_dispatch() -> None:
    """Call every VML-backed op once on a one-element tensor of each VML precision (once per
    process; a few hundred microseconds)."""
    for dtype in (torch.float32, torch.float64):
        one = torch.full((1,), 0.5, dtype=dtype)
        for op in VML_OPS:
            getattr(torch, op)(one)
