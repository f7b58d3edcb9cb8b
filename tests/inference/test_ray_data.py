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
    for task in ("para",):   # labels and probabilities (a score column: the Parquet test below)
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


def test_ray_engine_counts_and_refuses_the_rows_the_local_engine_does(tiny_export, tmp_path):
    """--on-error skip: a non-UTF-8 row, a short row and an empty text are skipped and counted
    on both engines, with the same lines and the same report; --on-error fail stops at the
    first, naming its line, on both (hostile-inputs issue, point 11)."""
    body = (b"id\tsentence1\tsentence2\n"
            b"r1\tA dog.\tA cat.\n"
            b"r2\t\xff\xfe broken\tA cat.\n"
            b"r3\tonly one\n"
            b"r4\t \tA cat.\n"
            b"r5\tTwo men.\tA man.\n")
    (tmp_path / "in.tsv").write_bytes(body)
    outputs = {}
    for engine in ("local", "ray"):
        result = run_cli("score", "sts", tmp_path / "in.tsv", "--model", tiny_export, "--on-error", "skip",
                         "-o", tmp_path / f"{engine}.tsv", "--engine", engine, timeout=600)
        assert result.returncode == 0, result.stderr.decode()[-3000:]
        report = [line for line in result.stderr.decode().splitlines() if line.startswith("skipped")]
        outputs[engine] = (_read(tmp_path / f"{engine}.tsv"), report)
    (local_rows, local_report), (ray_rows, ray_report) = outputs["local"], outputs["ray"]
    assert [r[0] for r in local_rows] == [r[0] for r in ray_rows] == ["id", "r1", "r5"]
    assert local_report == ray_report and local_report[0].startswith("skipped 3 bad rows (first: ")
    assert "in.tsv:3: not valid UTF-8" in local_report[0]
    for engine in ("local", "ray"):
        result = run_cli("score", "sts", tmp_path / "in.tsv", "--model", tiny_export, "-o", tmp_path / "fail.tsv",
                         "--engine", engine, timeout=600)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and "in.tsv:3: not valid UTF-8" in lines[0], lines
        assert not (tmp_path / "fail.tsv").exists()


def test_ray_engine_reads_parquet_and_jsonl_and_writes_parquet_in_parallel(tiny_export, tmp_path):
    """Parquet with ids is read by Ray Data's reader, JSON lines by mtcli's; -o x.parquet is a
    folder of parts written by Ray Data's writer; every row equals the local engine's."""
    import json

    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    rows = [{"id": f"r{i}", "sentence1": f"a dog runs {i}", "sentence2": "" if i == 5 else f"a cat {i}"}
            for i in range(40)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    local = run_cli("score", "sts", tmp_path / "in.parquet", "--model", tiny_export, "--on-error", "skip",
                    "-o", tmp_path / "local.tsv")
    assert local.returncode == 0, local.stderr.decode()
    expected = _read(tmp_path / "local.tsv")
    for source in ("in.jsonl",):   # (Parquet in: the run below, read by Ray Data's reader)
        ray = run_cli("score", "sts", tmp_path / source, "--model", tiny_export, "--on-error", "skip", "--engine", "ray",
                      "-o", tmp_path / f"{source}.tsv", timeout=600)
        assert ray.returncode == 0, ray.stderr.decode()[-3000:]
        assert "skipped 1 bad rows" in ray.stderr.decode()
        assert [r[0] for r in _read(tmp_path / f"{source}.tsv")] == [r[0] for r in expected]
    folder = tmp_path / "out.parquet"
    ray = run_cli("score", "sts", tmp_path / "in.parquet", "--model", tiny_export, "--on-error", "skip",
                  "--engine", "ray", "-o", folder, timeout=600)
    assert ray.returncode == 0, ray.stderr.decode()[-3000:]
    assert "skipped 1 bad rows" in ray.stderr.decode()
    assert folder.is_dir() and (folder / "_mtcli_scores.json").is_file()
    written = ds.dataset(folder, format="parquet").to_table().to_pylist()
    assert [r["id"] for r in written] == [r[0] for r in expected[1:]]
    assert [f"{r['score']:.6f}" for r in written] == [r[1] for r in expected[1:]]
