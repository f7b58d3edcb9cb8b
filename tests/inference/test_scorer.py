"""mtcli.inference.scorer: the Python API the CLI runs on. Torch-free, the CLI's numbers,
each distinct sentence of a separately encoded pair task encoded once."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, run_cli
from mtcli.core.errors import UserError
from mtcli.inference.scorer import WINDOW, Scorer


def test_import_from_the_package_imports_no_torch():
    code = "import sys\nfrom mtcli import Scorer\nassert 'torch' not in sys.modules, 'torch imported'\nprint(Scorer.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == b"Scorer", done.stderr.decode()


def test_the_api_gives_the_cli_numbers(tiny_export, tmp_path):
    rows = [("A dog runs.", "A dog is running."), ("Two men talk.", "A man speaks " * 20), ("x", "y")]
    with open(tmp_path / "in.tsv", "w", newline="") as fh:
        csv.writer(fh, delimiter="\t").writerows([("id", "sentence1", "sentence2"), *((f"r{i}", *r) for i, r in enumerate(rows))])
    scorer = Scorer(tiny_export, providers=["cpu"])
    for task in ("sts", "para"):
        result = run_cli("score", task, tmp_path / "in.tsv", "--model", tiny_export)
        printed = [line.split("\t") for line in result.stdout.decode().splitlines()[1:]]
        cli = np.array([float(fields[-1]) for fields in printed])
        assert np.abs(scorer.score(task, rows) - cli).max() <= 5e-7  # the CLI prints 6 decimals
    probabilities = scorer.score("sst", ["good", "bad", "fine"])
    assert probabilities.shape == (3, 5) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-6)


def test_each_distinct_sentence_is_encoded_once(tiny_export, monkeypatch):
    queries = [f"query number {i}" for i in range(5)]
    candidates = [f"candidate sentence {j} " + "word " * (j % 4) for j in range(30)]
    pairs = [(q, c) for q in queries for c in candidates]
    whole = Scorer(tiny_export, providers=["cpu"], dedup=False).score("para", pairs)
    scorer = Scorer(tiny_export, providers=["cpu"])
    encoded = []
    original = scorer._embed
    monkeypatch.setattr(scorer, "_embed", lambda sentences, batch_size: encoded.extend(sentences) or
                        original(sentences, batch_size))
    by_sentence = scorer.score("para", pairs)
    assert sorted(encoded) == sorted(queries + candidates)  # 35 encodings for 150 pairs
    assert np.abs(by_sentence - whole).max() <= 1e-5  # the same numbers as the whole pair graph


def test_sessions_do_not_spin_between_runs(tiny_export):
    """Idle onnxruntime threads sleep instead of spinning: a server's HTTP loop, the tokenizer and a
    second batch share the cores with them (BENCHMARKS, serving)."""
    scorer = Scorer(tiny_export, providers=["cpu"], threads=2)
    scorer.score("sst", ["a sentence"])
    for session in (s for sessions in scorer._sessions.values() for s in sessions):
        assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_embed_and_streaming_windows(tiny_export):
    scorer = Scorer(tiny_export, providers=["cpu"])
    sentences = [f"sentence {i % 7} with {'padding ' * (i % 5)}" for i in range(WINDOW + 10)]
    embeddings = scorer.embed(iter(sentences))  # an iterable, longer than one window
    assert embeddings.shape == (len(sentences), scorer.manifest["embedding"]["dim"])
    assert np.allclose(embeddings[0], embeddings[35], atol=1e-5) and not np.allclose(embeddings[0], embeddings[1])
    assert scorer.score("sst", iter([])).shape == (0, 5) and scorer.embed([]).shape[0] == 0


def test_bad_rows_and_tasks_are_user_errors(tiny_export):
    scorer = Scorer(tiny_export, providers=["cpu"])
    with pytest.raises(UserError, match="unknown task 'nli'"):
        scorer.score("nli", ["x"])
    with pytest.raises(UserError, match=r"rows\[0\]: expected a \(sentence1, sentence2\) pair of str, got 1 items"):
        scorer.score("sts", ["only one sentence"])


@pytest.mark.parametrize("call, message", [
    (lambda s: s.score("sst", "hello"), r"rows: expected a list of rows, got a str; wrap one row in a list"),
    (lambda s: s.score("sst", b"hello"), r"rows: expected a list of rows, got a bytes"),
    (lambda s: s.score("sst", 5), r"rows: expected a list \(or any iterable\) of rows, got int"),
    (lambda s: s.score("sst", [1]), r"rows\[0\]: expected a sentence \(str\), got int"),
    (lambda s: s.score("sst", ["fine", None]), r"rows\[1\]: expected a sentence \(str\), got NoneType"),
    (lambda s: s.score("sts", [("a", 2)]), r"rows\[0\]: expected a \(sentence1, sentence2\) pair of str, got str, int"),
    (lambda s: s.score("sts", [("", "")]), r"rows\[0\]: empty text"),
    (lambda s: s.score("sst", ["ok", "  \t"]), r"rows\[1\]: empty text"),
    (lambda s: s.score("sst", ["ok"], batch_size=0), r"batch_size: expected a whole number >= 1, got 0"),
    (lambda s: s.score("sst", ["ok"], batch_size=2.5), r"batch_size: expected a whole number >= 1, got 2.5"),
    (lambda s: s.embed(["ok"], batch_size=-1), r"batch_size: expected a whole number >= 1, got -1"),
    (lambda s: s.embed(["ok", ""]), r"rows\[1\]: empty text"),
    (lambda s: s.score_window("nli", [("x",)]), r"unknown task 'nli'"),
    (lambda s: s.score_window("sst", "x"), r"texts: expected a list of rows, got str"),
])
def test_the_python_api_follows_the_cli_rules(tiny_export, call, message):
    """A library user gets mtcli.UserError naming the argument, never a bare TypeError or a
    string scored as five one-character rows (hostile-inputs issue, point 12)."""
    import mtcli

    with pytest.raises(mtcli.UserError, match=message):
        call(Scorer(tiny_export, providers=["cpu"]))


def test_sessions_side_by_side_give_the_numbers_of_one(tiny_export, monkeypatch):
    """#60 point 4: batches shared out among sessions come back in input order, equal to one
    session's; the default is one single-threaded session per core."""
    from mtcli.inference.scorer import parallelism

    rows = [(f"sentence {i} " + "word " * (i % 7), f"other {i}") for i in range(300)]
    one = Scorer(tiny_export, providers=["cpu"], sessions=1, threads=1)
    two = Scorer(tiny_export, providers=["cpu"], sessions=2, threads=1)
    for task in ("sts", "para", "sst"):
        texts = rows if task != "sst" else [r[0] for r in rows]
        a, b = one.score(task, texts, batch_size=8), two.score(task, texts, batch_size=8)
        np.testing.assert_array_equal(a, b)
    assert len(two._sessions["embed.onnx"]) == 2 and len(two._sessions["para.head.onnx"]) == 1
    assert two.describe() == "2 sessions of 1 thread, batches side by side" and one.describe() == "1 session of 1 thread"
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert parallelism(None, None) == (4, 1) and parallelism(2, None) == (2, 2) and parallelism(None, 2) == (2, 2)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(UserError, match="expected a whole number >= 1"):
            parallelism(None, bad)


def test_score_says_how_it_ran_and_refuses_bad_counts(tiny_export, tmp_path):
    from conftest import one_line_error, run_cli_here

    rows = tmp_path / "rows.tsv"
    rows.write_text("sentence1\tsentence2\nA dog.\tA cat.\n")
    done = run_cli_here("score", "sts", rows, "--model", tiny_export, "-o", tmp_path / "o.tsv", "--sessions", "2",
                        "--threads", "1")
    assert done.returncode == 0 and b"onnxruntime: 2 sessions of 1 thread, batches side by side" in done.stderr
    one_line_error(run_cli_here("score", "sts", rows, "--model", tiny_export, "--sessions", "0"),
                   "--sessions 0: expected a whole number >= 1")
