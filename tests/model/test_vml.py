"""The oneMKL vector-math dispatch is settled on one thread before a model exists
(mtcli/model/vml.py, pytorch/pytorch#188792)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from mtcli.model.vml import VML_OPS

PROBE = """
import torch
import mtcli.model.vml as vml
from mtcli.model import BertConfig, MinBert
calls = []
for op in vml.VML_OPS:
    def recorded(x, *a, _op=op, _f=getattr(torch, op), **k):
        calls.append((_op, x.numel(), str(x.dtype)))
        return _f(x, *a, **k)
    setattr(torch, op, recorded)
config = BertConfig.for_family("bert", hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
MinBert(config)
first = len(calls)
MinBert(config)
print(first, len(calls), sorted(set(calls)) == sorted((op, 1, d) for op in vml.VML_OPS
                                                          for d in ("torch.float32", "torch.float64")))
"""


def test_building_a_model_calls_every_vml_op_once_on_one_element_per_precision():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    first, total, each = done.stdout.split()
    assert each == "True"                                   # every op, one element, float32 and float64
    assert int(first) == int(total) == 2 * len(VML_OPS)     # once per process: the second model calls none


@pytest.mark.skipif(shutil.which("nm") is None, reason="needs binutils' nm to list libtorch_cpu's symbols")
def test_the_list_covers_every_vml_function_torch_calls():
    """Every vms*/vmd* function linked into this torch maps to an op in VML_OPS (a newer torch
    that routes another op to VML fails here, not silently)."""
    lib = Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"
    if not lib.is_file():
        pytest.skip(f"{lib}: not this torch's layout")
    symbols = subprocess.run(["nm", str(lib)], capture_output=True, text=True).stdout
    functions = set(re.findall(r"\bvm[sd]([A-Z][A-Za-z0-9]*)\b", symbols))
    if not functions:
        pytest.skip("this torch calls no VML function (built without MKL)")
    spelled = {"Ln": "log", "ErfInv": "erfinv"}
    assert {spelled.get(f, f.lower()) for f in functions} <= set(VML_OPS)
