"""mtcli.inference.ray_data: `mtcli score --engine ray` on a local Ray cluster with two
workers writes the single-process CLI's output, row for row."""

import csv

import numpy as np
import pytest

from conftest import run_cli

pytest.importorskip("ray.data")


def _read(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh, delimiter="\t", strict=True))


def test_ray_engine_writes_the_cli_output(tiny_export, tmp_path):
    words = "the a dog cat runs sleeps quickly slowly in on house garden".split()
    rng = np.random.default_rng(0)
    with open(tmp_path / "in.tsv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["id", "sentence1", "sentence2"])
        for i in range(3000):
            a, b = (" ".join(rng.choice(words, size=rng.integers(2, 12))) for _ in range(2))
            writer.writerow([f"row\t{i}" if i % 500 == 0 else f"r{i}", a, b])  # some ids need quoting
    for task in ("sts", "para"):
        local = run_cli("score", task, tmp_path / "in.tsv", "--model", tiny_export, "-o", tmp_path / f"{task}-local.tsv")
        ray = run_cli("score", task, tmp_path / "in.tsv", "--model", tiny_export, "-o", tmp_path / f"{task}-ray.tsv",
                      "--engine", "ray", "--workers", "2", timeout=600)
        assert local.returncode == 0 and ray.returncode == 0, ray.stderr.decode()[-3000:]
        a, b = _read(tmp_path / f"{task}-local.tsv"), _read(tmp_path / f"{task}-ray.tsv")
        assert a[0] == b[0] and len(a) == len(b) == 3001
        assert [r[0] for r in a] == [r[0] for r in b]  # the same ids in the same order
        assert [r[1:-1] for r in a] == [r[1:-1] for r in b]  # labels
        values = np.array([[float(r[-1]) for r in rows[1:]] for rows in (a, b)])
        assert np.abs(values[0] - values[1]).max() <= 2e-6  # printed with 6 decimals


def test_ray_engine_refuses_stdin(tiny_export):
    result = run_cli("score", "sts", "-", "--model", tiny_export, "--engine", "ray", input=b"a\tb\n")
    assert result.returncode == 2 and "--engine ray reads a file" in result.stderr.decode()
