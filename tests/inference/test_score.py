"""ONNX export of a tiny model and torch-free scoring of every kind of TSV input."""

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import REPO, run_cli
from mtcli.core.errors import DataError, UserError
from mtcli.inference.manifest import FORMAT_VERSION, read_manifest
from mtcli.eval.evaluate import evaluate_onnx
from mtcli.inference.score import score_file
from mtcli.inference.scorer import Scorer
from conftest import builtin


def test_export_writes_graphs_tokenizer_and_manifest(tiny_export, tiny_checkpoint):
    manifest = read_manifest(tiny_export)
    assert manifest["opset"] >= 17 and manifest["max_length"] == 128 and manifest["pooling"] == "mean"
    assert manifest["checkpoint"]["sha256"] and manifest["versions"]["mtcli"]
    assert manifest["tasks"]["para"]["encoding"] == "separate" and manifest["tasks"]["sts"]["encoding"] == "joint"
    assert manifest["tasks"]["sst"]["task"]["labels"] == list(builtin("sst").labels)
    for entry in manifest["tasks"].values():
        assert entry["parity_max_abs_diff"] <= 1e-4
        graph = onnx.load(str(tiny_export / entry["file"]))
        onnx.checker.check_model(graph)
        dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.graph.input]
        assert all(isinstance(d[0], str) and isinstance(d[1], str) for d in dims), dims  # dynamic batch and sequence
        assert (tiny_export / entry["int8_file"]).is_file()
    assert "change" in manifest["int8_dev"] and (tiny_export / "tokenizer.json").is_file()


def _op_counts(path) -> dict[str, int]:
    from collections import Counter

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


def test_graphs_are_fused_for_onnxruntime(tiny_export):
    """One fused Attention per encoder layer (and fused layer norms and GELU), in the fp32 graphs
    and as QAttention in the int8 ones: the difference between 1x and 1.5x torch's speed."""
    manifest = read_manifest(tiny_export)
    layers = 2  # the tiny model's
    for task, entry in manifest["tasks"].items():
        assert entry["fused_operators"]["Attention"] == layers, (task, entry["fused_operators"])
        ops = _op_counts(tiny_export / entry["file"])
        assert ops["Attention"] == layers and ops["SkipLayerNormalization"] == 2 * layers and ops["BiasGelu"] == layers
        assert ops["Softmax"] == (task == "sst") and "Erf" not in ops  # only the SST head's softmax is left
        int8 = _op_counts(tiny_export / entry["int8_file"])
        assert int8["QAttention"] == layers and int8["MatMulInteger"] >= 2 * layers
        kept = manifest["int8_kept_fp32"]   # one feed-forward projection a layer stays fp32, or none (INT8_FP32_CANDIDATES)
        assert int8.get("MatMul", 0) >= (0 if kept == "nothing" else layers) and int8["MatMulInteger"] >= (
            3 if kept == "nothing" else 2) * layers


def test_cosine_head_exports_and_matches_torch(tmp_path, tiny_model_dir):
    """The parameter-free cosine head (both sentences encoded separately) through ONNX."""
    from rich.console import Console

    from mtcli.model.checkpoint import load_checkpoint
    from mtcli.export.onnx import export
    from mtcli.model.predict import predict_texts
    from mtcli.train import TrainConfig
    from mtcli.train.loop import Trainer

    config = TrainConfig(model_dir=str(tiny_model_dir), out=str(tmp_path), name="cos", limit=32, batch_size=8,
                         max_steps=2, lr=1e-3, encodings={"para": "cross", "sts": "cosine"}, sampler="triple-batch")
    best = Trainer(config, Console(quiet=True)).run() / "best"
    manifest = export(best, tmp_path / "export")
    entry = manifest["tasks"]["sts"]
    assert entry["task"]["encoding"] == "cosine" and entry["encoding"] == "separate" and entry["fused_operators"]["Attention"] == 2
    model, tokenizer, _ = load_checkpoint(best)
    pairs = [("A dog runs.", "A dog is running."), ("Nothing alike", "at all " * 40)]
    expected, _ = predict_texts(model, tokenizer, "sts", pairs, device="cpu")
    for dedup in (True, False):  # a sentence at a time (embed + head graphs), and the whole pair graph
        got = Scorer(tmp_path / "export", providers=["cpu"], dedup=dedup).score("sts", pairs)
        assert np.abs(got - expected).max() <= 1e-4


def test_onnx_matches_torch_on_new_shapes(tiny_export, tiny_checkpoint):
    from mtcli.model.checkpoint import load_checkpoint
    from mtcli.model.predict import predict_texts

    model, tokenizer, _ = load_checkpoint(tiny_checkpoint)
    rows = {"sst": [("a",), ("a much longer sentence " * 20,), ("three words here",)],
            "para": [("How do I learn?", "What is learning?"), ("x", "y " * 300)],
            "sts": [("A dog runs.", "A dog is running."), ("Nothing alike", "at all " * 50), ("a", "b")]}
    for task, texts in rows.items():
        expected, _ = predict_texts(model, tokenizer, task, texts, device="cpu")
        got = Scorer(tiny_export, providers=["cpu"]).score(task, texts, batch_size=2)
        assert np.abs(got - expected).max() <= 1e-4, task


def test_eval_onnx_equals_torch_eval(tiny_export, tiny_checkpoint, tmp_path):
    torch_run = run_cli("eval", "--checkpoint", tiny_checkpoint, "--limit", "200", "--out", tmp_path / "torch")
    onnx_run = run_cli("eval", "--onnx", tiny_export, "--limit", "200", "--out", tmp_path / "onnx")
    assert torch_run.returncode == 0 and onnx_run.returncode == 0, onnx_run.stderr.decode()
    a = json.loads((tmp_path / "torch" / "eval.json").read_text())
    b = json.loads((tmp_path / "onnx" / "eval.json").read_text())
    assert b["backend"] == "onnxruntime"
    for task, spec in builtin().items():
        assert b["tasks"][task][spec.metric] == pytest.approx(a["tasks"][task][spec.metric], abs=1e-3)
    assert b["overall"] == pytest.approx(a["overall"], abs=1e-3)


def _score(tiny_export, tmp_path, task, body: bytes, **kwargs):
    source = tmp_path / "in.tsv"
    source.write_bytes(body)
    out = tmp_path / "out.tsv"
    stats = score_file(task, str(source), str(out), model_dir=tiny_export, providers=["cpu"], **kwargs)
    return stats, out.read_text().splitlines()


def test_header_by_name_in_any_order(tiny_export, tmp_path):
    body = b"sentence2\tid\tsentence1\nA cat.\tr1\tA dog.\nTwo men.\tr2\tA man.\n"
    stats, lines = _score(tiny_export, tmp_path, "sts", body)
    assert lines[0] == "id\tscore" and [l.split("\t")[0] for l in lines[1:]] == ["r1", "r2"]
    swapped = _score(tiny_export, tmp_path, "sts", b"id\tsentence1\tsentence2\nr1\tA dog.\tA cat.\n")[1]
    assert swapped[1] == lines[1]  # same pair, same score


def test_no_header_by_position_and_order_restored(tiny_export, tmp_path):
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(3000)]  # > one window, varied lengths
    body = "".join(f"id{i}\t{t}\n" for i, t in enumerate(texts)).encode()
    stats, lines = _score(tiny_export, tmp_path, "sst", body, batch_size=16, header=False)
    assert stats.rows == 3000 and len(lines) == 3001
    assert lines[0].split("\t")[:2] == ["id", "label"] and len(lines[0].split("\t")) == 7
    assert [l.split("\t")[0] for l in lines[1:]] == [f"id{i}" for i in range(3000)]
    direct = Scorer(tiny_export, providers=["cpu"]).score("sst", [texts[1234]])[0]
    assert np.allclose([float(v) for v in lines[1235].split("\t")[2:]], direct, atol=1e-6)
    single = _score(tiny_export, tmp_path, "sst", b"just text\nmore text\n", header=False)[1]
    assert [l.split("\t")[0] for l in single[1:]] == ["1", "2"]  # no id column: line numbers


def test_quotes_tabs_in_quotes_and_long_rows(tiny_export, tmp_path):
    body = (b'id\tsentence1\tsentence2\n'
            b'q1\t"He said ""hi"""\t"a\ttab inside"\n'
            b'q2\t' + b"word " * 5000 + b'\tshort\n')
    stats, lines = _score(tiny_export, tmp_path, "para", body)
    assert stats.rows == 2 and lines[0] == "id\tlabel\tp_duplicate"
    assert lines[1].startswith("q1\t") and lines[2].startswith("q2\t")


@pytest.mark.parametrize("body, line, message", [
    (b"id\tsentence1\tsentence2\nr1\ta\tb\nr2\tonly one\n", 3, "expected 3 columns, found 2"),
    (b"id\tsentence1\tsentence2\nr1\ta\t  \n", 2, "empty text"),
    (b"id\tsentence1\tsentence2\nr1\ta\tb\nr2\t\xff\xfe\tc\n", 3, "not valid UTF-8"),
    (b"", None, "file is empty"),
    (b"a\tb\tc\td\te\n", 1, "the header names none of sts's text columns"),
    (b"id\tsentence\nr1\tx\n", 1, "the header names none of sts's text columns"),
    (b"id\tsentence1\tx\nr1\tx\ty\n", 1, "header has no column 'sentence2' for sentence2"),
])
def test_bad_input_fails_with_file_and_line_and_leaves_no_output(tiny_export, tmp_path, body, line, message):
    with pytest.raises(DataError, match=message) as info:
        _score(tiny_export, tmp_path, "sts", body)
    assert info.value.line == line and info.value.path.endswith("in.tsv")
    assert not (tmp_path / "out.tsv").exists() and not list(tmp_path.glob(".out.tsv*"))


def test_skip_mode_counts_bad_rows(tiny_export, tmp_path):
    body = b"id\tsentence1\tsentence2\nr1\ta\tb\nr2\tonly one\nr3\t\xff\tc\nr4\tc\td\n"
    stats, lines = _score(tiny_export, tmp_path, "sts", body, on_error="skip")
    assert stats.rows == 2 and len(stats.skipped) == 2 and [l.split("\t")[0] for l in lines[1:]] == ["r1", "r4"]
    assert {e.line for e in stats.skipped} == {3, 4}


def test_score_cli_imports_no_torch_and_reads_stdin(tiny_export, tmp_path):
    code = ("import sys\nfrom mtcli.cli import main\n"
            f"sys.argv = ['mtcli', 'score', 'sts', '-', '--model', {str(tiny_export)!r}, '-o', {str(tmp_path / 'o.tsv')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'torch' not in sys.modules, 'score imported torch'\nprint('no torch')\n")
    done = subprocess.run([sys.executable, "-c", code], input=b"sentence1\tsentence2\nA dog.\tA cat.\nA man.\tA woman.\n",
                          capture_output=True, cwd=REPO)
    assert done.returncode == 0 and b"no torch" in done.stdout, done.stderr.decode()
    assert (tmp_path / "o.tsv").read_text().splitlines()[0] == "id\tscore"
    piped = run_cli("score", "para", "-", "--model", tiny_export, "--no-header", input=b"A dog.\tA cat.\n")
    assert piped.returncode == 0 and piped.stdout.decode().splitlines()[0] == "id\tlabel\tp_duplicate"


def test_cli_errors_are_one_line_exit_2(tiny_export, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"id\tsentence1\tsentence2\nr1\ta\n")
    for args, message in ((["sts", bad, "--model", tiny_export, "-o", tmp_path / "o.tsv"], "bad.tsv:2: expected 3"),
                          (["sts", tmp_path / "missing.tsv", "--model", tiny_export], "missing.tsv: file not found"),
                          (["nli", bad, "--model", tiny_export], "unknown task 'nli'"),
                          (["sts", bad, "--model", tmp_path], "manifest.json: not found")):
        result = run_cli("score", *args)
        lines = result.stderr.decode().strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr.decode()
    assert not (tmp_path / "o.tsv").exists()


def test_manifest_from_another_version_and_corrupt_graph(tiny_export, tmp_path):
    import shutil

    copy = tmp_path / "export"
    shutil.copytree(tiny_export, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(UserError, match="manifest format v99 .* re-run `mtcli export`"):
        Scorer(copy)
    manifest["format_version"] = FORMAT_VERSION
    (copy / "manifest.json").write_text(json.dumps(manifest))
    (copy / "sts.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(UserError, match="sts.onnx: cannot load the ONNX graph"):
        Scorer(copy, providers=["cpu"]).score("sts", [("a", "b")])  # the cross-encoded sts of the tiny export
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match="manifest.json: not valid JSON"):
        Scorer(copy)


def test_int8_graphs_score(tiny_export):
    results = evaluate_onnx(tiny_export, limit=50, quantized=True, providers=["cpu"]).results
    assert set(results["tasks"]) == set(builtin()) and results["overall"] is not None


# ---------------------------------------------------------------- output that reads back

_AWKWARD = ["plain", "tab\there", "new\nline", "carriage\rreturn", "crlf\r\n", 'quote"inside', '"quoted"', "", " ",
            " padded ", "comma,here", "\x00nul", "é ü 中文", "\u2028sep", "id", "sentence1"]


def _write_input(path, rows):
    """A pair-task input TSV written by the csv module (as any tool would quote it)."""
    import csv

    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writerow(["id", "sentence1", "sentence2"])
        writer.writerows(rows)


def _read_output(path):
    import csv

    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh, delimiter="\t", strict=True))


def test_output_rows_read_back_with_awkward_ids(tiny_export, tmp_path):
    rows = [[row_id, f"text {i} with \"quotes\"\tand tab", f"other\nside {i}"] for i, row_id in enumerate(_AWKWARD)]
    _write_input(tmp_path / "in.tsv", rows)
    for task in ("sts", "para"):
        result = run_cli("score", task, tmp_path / "in.tsv", "--model", tiny_export, "-o", tmp_path / f"{task}.tsv")
        assert result.returncode == 0, result.stderr.decode()
        back = _read_output(tmp_path / f"{task}.tsv")
        assert [r[0] for r in back[1:]] == _AWKWARD
        assert all(len(r) == len(back[0]) for r in back)


def test_score_output_to_stdout_reads_back(tiny_export, tmp_path):
    import csv
    import io

    rows = [[row_id, "a sentence", "another"] for row_id in _AWKWARD]
    _write_input(tmp_path / "in.tsv", rows)
    result = run_cli("score", "sts", tmp_path / "in.tsv", "--model", tiny_export)
    back = list(csv.reader(io.StringIO(result.stdout.decode(), newline=""), delimiter="\t", strict=True))
    assert [r[0] for r in back[1:]] == _AWKWARD


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_ids = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30).filter(lambda t: t.strip())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(_ids, _texts, _texts), min_size=1, max_size=12))
def test_score_output_round_trips_arbitrary_ids_and_texts(tiny_export, tmp_path_factory, rows):
    folder = tmp_path_factory.mktemp("roundtrip")
    _write_input(folder / "in.tsv", [list(r) for r in rows])
    stats = score_file("sts", str(folder / "in.tsv"), str(folder / "out.tsv"), model_dir=tiny_export,
                       providers=["cpu"])
    back = _read_output(folder / "out.tsv")
    assert stats.rows == len(rows) and back[0] == ["id", "score"]
    assert [r[0] for r in back[1:]] == [r[0] for r in rows]
    assert all(len(r) == 2 and 0.0 <= float(r[1]) <= 5.0 for r in back[1:])


# ---------------------------------------------------------------- header or not, said by the user

def test_a_header_naming_none_of_the_columns_is_never_scored_as_data(tiny_export, tmp_path):
    """qa.tsv with `question<TAB>answer`: mapped with --columns, or an error saying how; and a
    headerless file whose first text is the word `sentence` keeps that row with --no-header."""
    body = b"question\tanswer\nhow do I win?\tyou win it\n"
    with pytest.raises(DataError, match=r"in.tsv:1: the header names none of sts's text columns \(sentence1, "
                                        r"sentence2; found: 'question', 'answer'\): map them with --columns "
                                        r"sentence1=COLUMN,sentence2=COLUMN, or pass --no-header"):
        _score(tiny_export, tmp_path, "sts", body)
    stats, lines = _score(tiny_export, tmp_path, "sts", body, columns={"sentence1": "question", "sentence2": "answer"})
    assert stats.rows == 1 and lines[1].startswith("2\t")  # ids: line numbers
    stats, lines = _score(tiny_export, tmp_path, "sst", b"sentence\nanother one\n", header=False)
    assert stats.rows == 2 and [l.split("\t")[0] for l in lines[1:]] == ["1", "2"]
    stats, lines = _score(tiny_export, tmp_path, "sts", b"7\tx\tA dog.\tA cat.\n", header=False,
                          columns={"id": "1", "sentence1": "3", "sentence2": "4"})
    assert lines[1].startswith("7\t")


@pytest.mark.parametrize("columns, header, message", [
    ({"nli": "x"}, True, "--columns: 'nli' is not a column of task 'sts'"),
    ({"sentence1": "question"}, True, "header has no column 'sentence2' for sentence2"),
    ({"sentence1": "9", "sentence2": "2"}, False, "--columns sentence1=9: without a header, columns are 1-based"),
    ({"sentence1": "1"}, False, "with --no-header give every text column's position"),
])
def test_column_maps_are_checked(tiny_export, tmp_path, columns, header, message):
    with pytest.raises(UserError, match=re.escape(message)):
        _score(tiny_export, tmp_path, "sts", b"question\tanswer\nq\ta\n", columns=columns, header=header)


# ---------------------------------------------------------------- formats as distributed, labels by name

def _rows_in_formats(tmp_path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = list(rows[0])
    (tmp_path / "in.tsv").write_text("\t".join(names) + "\n" + "".join("\t".join(r[n] for n in names) + "\n"
                                                                     for r in rows))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "in.parquet")


def test_jsonl_and_parquet_input_and_parquet_output_agree_with_tsv(tiny_export, tmp_path):
    import pyarrow.parquet as pq

    rows = [{"id": f"r{i}", "sentence1": f"a dog runs {i}", "sentence2": f"a cat sleeps {'long ' * i}"}
            for i in range(9)]
    _rows_in_formats(tmp_path, rows)
    outputs = {}
    for suffix in ("tsv", "jsonl", "parquet"):
        stats = score_file("para", str(tmp_path / f"in.{suffix}"), str(tmp_path / f"out-{suffix}.tsv"),
                           model_dir=tiny_export, providers=["cpu"])
        assert stats.rows == 9
        outputs[suffix] = (tmp_path / f"out-{suffix}.tsv").read_text()
    assert outputs["tsv"] == outputs["jsonl"] == outputs["parquet"]
    score_file("para", str(tmp_path / "in.parquet"), str(tmp_path / "out.parquet"), model_dir=tiny_export,
               providers=["cpu"])
    table = pq.read_table(tmp_path / "out.parquet").to_pylist()
    text = [line.split("\t") for line in outputs["tsv"].splitlines()]
    assert text[0] == list(table[0]) == ["id", "label", "p_duplicate"]
    assert [[r["id"], r["label"], f"{r['p_duplicate']:.6f}"] for r in table] == text[1:]
    assert {r["label"] for r in table} <= {"not duplicate", "duplicate"}  # the declared class names


def test_labels_by_name_or_index(tiny_export, tmp_path):
    (tmp_path / "in.tsv").write_text("sentence\nwhat a film\nawful\n")
    by_name = _score(tiny_export, tmp_path, "sst", (tmp_path / "in.tsv").read_bytes())[1]
    by_index = _score(tiny_export, tmp_path, "sst", (tmp_path / "in.tsv").read_bytes(), labels="index")[1]
    names = builtin("sst").labels
    for named, indexed in zip(by_name[1:], by_index[1:]):
        assert named.split("\t")[1] == names[int(indexed.split("\t")[1])]
        assert named.split("\t")[2:] == indexed.split("\t")[2:]


def test_literal_quotes_in_score_input_are_said_once(tiny_export, tmp_path):
    heard = []
    body = b'id\tsentence1\tsentence2\nr1\t"Yes," he said.\tHe agreed.\nr2\tthe "witness", he said\tok\n'
    stats, lines = _score(tiny_export, tmp_path, "sts", body, on_note=heard.append)
    assert stats.rows == 2 and len(heard) == 1 and "read quotes as literal text" in heard[0]
    with pytest.raises(DataError, match="in.tsv:2: malformed row"):
        _score(tiny_export, tmp_path, "sts", body, quoting="csv")
