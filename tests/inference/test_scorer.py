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
    with pytest.raises(UserError, match=r"each row of this task is a \(sentence1, sentence2\) pair"):
        scorer.score("sts", ["only one sentence"])
