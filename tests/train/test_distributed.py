"""torchrun with 2 CPU processes (gloo): identical parameters on every rank, and equal to a
single process on the union of the shards (every rank computes the weights from the same
all-reduced buffer or losses; stateful methods carry their state alike)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import REPO
from mtcli.weightings import WEIGHTINGS


def _train(tmp_path, tiny_model_dir, name, combine, processes, extra=()):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] \
        if processes > 1 else [sys.executable]
    args = ["-m", "mtcli", "train", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path), "--name", name,
            "--limit", "32", "--batch-size", "8", "--dropout", "0", "--epochs", "2", "--max-steps", "6",
            "--lr", "1e-3", "--sampler", "proportional", "--combine", combine, "--seed", "7",
            *(["--task-weights", "sst=0.5,para=1,sts=2"] if combine == "weighted" else []), *map(str, extra)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, *args], capture_output=True, env=env, cwd=REPO, timeout=240)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    (tmp_path / f"{name}.stderr").write_bytes(done.stderr)
    return tmp_path / name


# By default two methods whose state or sharding differs most from a plain sum: rows with state
# the size of the gradients (moco), a gram method with state that takes two samples of each task
# (modo: the ranks shard in blocks). MTCLI_EVERY_METHOD=1 runs every method, famo's extra forward
# and graddrop's draws among them (about 15 s each on 2 cores: 69 passed in 11:41 on 2026-12-02).
METHODS = list(WEIGHTINGS) if os.environ.get("MTCLI_EVERY_METHOD") else ["moco", "modo"]


@pytest.mark.parametrize("combine", METHODS)
def test_two_processes_match_one_process_on_the_union(tmp_path, tiny_model_dir, combine):
    ddp = _train(tmp_path, tiny_model_dir, f"ddp-{combine}", combine, 2)
    single = _train(tmp_path, tiny_model_dir, f"single-{combine}", combine, 1)
    records = [json.loads(line) for line in (ddp / "metrics.jsonl").read_text().splitlines()]
    check = [r for r in records if r["type"] == "ddp"]
    assert check and check[0]["world"] == 2 and check[0]["max_parameter_divergence"] == 0.0  # bit-identical ranks
    a, b = load_file(ddp / "last" / "model.safetensors"), load_file(single / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst <= 1e-5, worst
    initial = load_file(tiny_model_dir / "model.safetensors")
    moved = max((a[k] - initial[k]).abs().max().item() for k in initial)
    assert moved > 1e-3, "training did not change the encoder: the comparison would be vacuous"
    steps = [r for r in records if r["type"] == "step"]
    assert len(steps) == 6 and all("weights" in r for r in steps)
    single_steps = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()
                    if json.loads(line)["type"] == "step"]
    for a_step, b_step in zip(steps, single_steps):  # the same weights as one process on the whole batch
        assert a_step["weights"].keys() == b_step["weights"].keys()
        assert all(abs(a_step["weights"][t] - b_step["weights"][t]) <= 1e-4 * max(1.0, abs(b_step["weights"][t]))
                   for t in a_step["weights"])


def test_batch_must_divide_over_processes(tmp_path, tiny_model_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                           "-m", "mtcli", "train", "--model-dir", str(tiny_model_dir), "--out", str(tmp_path),
                           "--limit", "16", "--batch-size", "7"], capture_output=True, env=env, cwd=REPO, timeout=240)
    assert done.returncode != 0 and b"must divide evenly over 2 processes" in done.stderr


def test_two_processes_distil_as_one_process(tmp_path, tiny_model_dir, tiny_export):
    """Distillation's targets under torchrun: each rank labels its share of the rows, the shares
    gathered make the single process's labels, and the ranks' shards of the mixed targets make
    the single process's step."""
    teacher = ["--teacher", tiny_export, "--distill-embeddings", "1"]   # the embeddings gathered too
    ddp = _train(tmp_path, tiny_model_dir, "ddp-distil", "pcgrad", 2, teacher)
    single = _train(tmp_path, tiny_model_dir, "single-distil", "pcgrad", 1, teacher)
    a, b = load_file(ddp / "last" / "model.safetensors"), load_file(single / "last" / "model.safetensors")
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-5
    labels, alone = load_file(ddp / "teacher-labels.safetensors"), load_file(single / "teacher-labels.safetensors")
    assert labels.keys() == alone.keys() == {"sst", "para", "sts", "embed:sst", "embed:para", "embed:sts"}
    assert all(torch.allclose(labels[k], alone[k], atol=1e-6) for k in labels)
    log = (tmp_path / "ddp-distil.stderr").read_text()
    rows = {t: len(alone[t]) for t in ("sst", "para", "sts")}
    for task in ("sst", "para", "sts"):   # rank 0 labelled its half (rank 1's output is quiet)
        assert f"teacher {task}: {rows[task]:,} rows to label, {rows[task] // 2:,} of them in this process of 2" in log


def test_the_ranks_shares_cover_every_row_once():
    """A teacher's labelling is split by Distributed.share: every row in exactly one rank's share,
    in rank order, uneven counts and fewer rows than ranks included."""
    from mtcli.train.distributed import Distributed

    for world in (1, 2, 3, 8):
        for count in (0, 1, 5, 10, 33):
            shares = [Distributed(rank, world).share(count) for rank in range(world)]
            assert [i for s in shares for i in range(count)[s]] == list(range(count))
            assert shares == [Distributed(0, world).share(count, rank) for rank in range(world)]
            assert max(s.stop - s.start for s in shares) - min(s.stop - s.start for s in shares) <= 1
