"""The hostile-inputs issue's cases, re-run through the command line: each case's command, its
exit code and the last line it printed, as a Markdown table (what the issue's closing note
reports; tests/cli/test_hostile_inputs.py and the tests beside it assert the same).

    python scripts/hostile_cases.py            # builds a tiny model, run and export in a temp folder

Needs the packaged backbone (for its tokenizer); everything else is made here.
"""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
ROWS: list[tuple[str, str, int, str]] = []


def mtcli(*args, cwd=None, stdin=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mtcli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, env=ENV, input=stdin, timeout=timeout)


def case(point: str, what: str, done: subprocess.CompletedProcess | tuple[int, str]) -> None:
    code, err = (done.returncode, done.stderr) if isinstance(done, subprocess.CompletedProcess) else done
    lines = [line for line in err.strip().splitlines() if line.strip()]
    ROWS.append((point, what, code, lines[-1][:150] if lines else ""))
    print(f"{point:>4} {code:>4}  {what}", flush=True)


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def main() -> None:
    import torch

    from mtcli.core.paths import default_model_dir
    from mtcli.core.tokenizer import Tokenizer
    from mtcli.model import BertConfig, MinBert

    work = Path(tempfile.mkdtemp(prefix="mtcli-hostile-"))
    tiny = work / "tiny"
    torch.manual_seed(0)
    MinBert(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                       max_position_embeddings=256), with_pooler=True).save_pretrained(tiny)
    Tokenizer.from_dir(default_model_dir()).save(tiny)
    data = work / "data"
    data.mkdir()
    words = "cheap offer win now meeting lunch report call prize free tomorrow project".split()
    for split, n in (("train", 24), ("dev", 8)):
        (data / f"{split}.tsv").write_text("id\tmessage\tverdict\n" + "".join(
            f"{split}{i}\t{words[i % 12]} {words[(3 * i) % 12]} {i}\t{'spam' if i % 3 else 'ham'}\n" for i in range(n)))
    tasks = """[[task]]\nname = "{name}"\nkind = "binary"\ntext = ["message"]\nlabel = "verdict"\n{labels}\ntrain = "{train}"\ndev = "dev.tsv"\n"""

    def task_file(name="mail", train="train.tsv", labels='labels = ["ham", "spam"]', file="tasks.toml"):
        (data / file).write_text(tasks.format(name=name, train=train, labels=labels))
        return data / file

    base = ["--model-dir", tiny, "--batch-size", "4", "--lr", "1e-3"]
    run = mtcli("train", *base, "--tasks", task_file(), "--out", work / "runs", "--name", "r", "--max-steps", "6",
                "--epochs", "2")
    assert run.returncode == 0, run.stderr
    runs = work / "runs"
    export_run = mtcli("train", *base, "--out", runs, "--name", "cs", "--limit", "24", "--max-steps", "3")
    assert export_run.returncode == 0, export_run.stderr
    assert mtcli("export", "--checkpoint", runs / "cs" / "best", "--out", work / "export").returncode == 0

    def copy_run(name):
        shutil.rmtree(runs / name, ignore_errors=True)
        shutil.copytree(runs / "r", runs / name)
        return runs / name

    # 1. a pickle in the run folder
    victim, marker = copy_run("p"), work / "pwned"
    with open(victim / "last" / "trainer_state.pt", "wb") as fh:
        pickle.dump({"optimizer": Payload(marker)}, fh)
    done = mtcli("train", "--resume", victim)
    case("1", f"resume a run whose trainer_state.pt runs os.system (marker created: {marker.exists()})", done)
    # 2. a manifest naming a secret file
    secret = work / "shadow"
    secret.write_text("root:SECRET-HASH:19000\n")
    hostile = work / "hostile-export"
    shutil.copytree(work / "export", hostile)
    manifest = json.loads((hostile / "manifest.json").read_text())
    for entry in manifest["tasks"].values():
        entry["task"]["dev"] = str(secret)
    (hostile / "manifest.json").write_text(json.dumps(manifest))
    done = mtcli("eval", "--onnx", hostile)
    case("2", f"eval --onnx, manifest dev = {secret.name} (content echoed: {'SECRET' in done.stderr + done.stdout})",
         done)
    # 3. a 1-row task next to a bigger one, proportional sampler, many seeds
    (data / "one.tsv").write_text("id\tmessage\tverdict\nx\tfree prize\tspam\n")
    two = data / "two.toml"
    two.write_text(tasks.format(name="mail", train="train.tsv", labels='labels = ["ham", "spam"]') +
                   tasks.format(name="tiny", train="one.tsv", labels='labels = ["ham", "spam"]'))
    codes = [mtcli("train", *base, "--tasks", two, "--out", runs, "--name", f"s{seed}", "--seed", seed,
                   "--max-steps", "4", "--epochs", "3").returncode for seed in range(5)]
    case("3", f"train a 1-row task next to a 24-row one, proportional, seeds 0-4: exit codes {codes}",
         (max(codes), ""))
    # 4. a torn metrics.jsonl line
    torn = copy_run("t")
    with open(torn / "metrics.jsonl", "a") as fh:
        fh.write('{"type": "step", "st')
    case("4", "report a run whose metrics.jsonl ends in a torn line", mtcli("report", torn))
    case("4", "train --resume the same run (the torn line is cut off)", mtcli("train", "--resume", torn))
    # 5. names that would collide
    case("5", "a task named embed", mtcli("train", *base, "--tasks", task_file(name="embed", file="embed.toml"),
                                              "--out", runs))
    # 6. numeric label names
    task_file(labels='labels = ["1", "0"]', file="numeric.toml")
    from mtcli.core.tasks import load_task_file

    task = load_task_file(data / "numeric.toml")["mail"]
    spellings = {raw: task.parse_label(raw) for raw in ("1", "1.0", "1e0", "0", "0.0")}
    case("6", f"labels = [\"1\", \"0\"]: data labels read as classes {spellings}", (0, ""))
    # 7. resume from elsewhere; a changed data file
    moved = work / "elsewhere"
    moved.mkdir()
    case("7", "train --resume from another working directory", mtcli("train", "--resume", runs / "r", cwd=moved))
    original = (data / "train.tsv").read_bytes()
    with open(data / "train.tsv", "a") as fh:
        fh.write("extra\tnew row\tspam\n")
    case("7", "train --resume after the train file changed", mtcli("train", "--resume", runs / "r", cwd=moved))
    (data / "train.tsv").write_bytes(original)
    # 8. combine parameters
    for spec in ("cagrad:c=nan", "cagrad:c=inf", "fairgrad:alpha=nan", "fairgrad:alpha=-1", "mgda:max_iters=-5",
                 "mgda:epsilon=nan", "mgda:epsilon=-1", "nash-mtl:max_norm=nan", "cagrad:norm_eps=-1",
                 "cagrad:c=1,c=2", "weighted:task_weights=1"):
        case("8", f"--combine {spec} (run folder created: {(runs / 'c8').exists()})",
             mtcli("train", *base, "--combine", spec, "--out", runs, "--name", "c8"))
    # 9. a line of 20 MB
    big = work / "big.tsv"
    big.write_text("sentence\n" + "a great film, truly! " * 1_000_000 + "\nfine\n")
    case("9", "score sst on a 20 MB line", mtcli("score", "sst", big, "--model", work / "export", "-o", work / "b.tsv"))
    # 10. SIGTERM without --save-every
    child = subprocess.Popen([sys.executable, "-m", "mtcli", "train", *map(str, base), "--tasks", str(task_file()),
                              "--out", str(runs), "--name", "term", "--epochs", "30"], env=ENV, cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    log = runs / "term" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and log.stat().st_size):
        time.sleep(0.05)
    child.send_signal(signal.SIGTERM)
    _, err = child.communicate(timeout=120)
    case("10", "SIGTERM to train without --save-every", (child.returncode, err))
    case("10", "train --resume that run", mtcli("train", "--resume", runs / "term", "--epochs", "30"))
    # 11. the Ray engine's bad rows (see tests/inference/test_ray_data.py for the row-for-row comparison)
    bad = work / "bad.tsv"
    bad.write_bytes(b"id\tsentence1\tsentence2\nr1\tA dog.\tA cat.\nr2\t\xff\xfe x\tA cat.\nr3\tonly one\nr4\tTwo.\tOne.\n")
    for engine in ("local", "ray"):
        case("11", f"score --on-error skip, engine {engine}", mtcli("score", "sts", bad, "--model", work / "export",
                                                                 "--on-error", "skip", "-o", work / f"{engine}.tsv",
                                                                 "--engine", engine))
    # 12. the Python API
    from mtcli import Scorer, UserError

    scorer = Scorer(work / "export", providers=("cpu",))
    for call, what in ((lambda: scorer.score("sst", "hello"), "Scorer.score('sst', 'hello')"),
                       (lambda: scorer.score("sst", [1]), "Scorer.score('sst', [1])"),
                       (lambda: scorer.score("sst", ["x"], batch_size=0), "batch_size=0"),
                       (lambda: scorer.score_window("nli", [("x",)]), "score_window('nli', ...)"),
                       (lambda: scorer.score("sts", [("", "")]), "an empty pair")):
        try:
            call()
            case("12", what, (0, "scored"))
        except UserError as e:
            case("12", f"{what}: mtcli.UserError", (2, str(e)))
    # 13. one line where a traceback was
    broken = copy_run("j")
    (broken / "config.json").write_text("{not json")
    case("13", "invalid JSON in config.json", mtcli("train", "--resume", broken))
    edited = copy_run("e")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "combine": "upgrad"}))
    case("13", "config.json edited to another combine", mtcli("train", "--resume", edited))
    heads = copy_run("h")
    meta = json.loads((heads / "best" / "mtcli.json").read_text())
    meta["heads"]["surprise"] = 1
    (heads / "best" / "mtcli.json").write_text(json.dumps(meta))
    case("13", "an extra key under heads in mtcli.json", mtcli("eval", "--checkpoint", heads / "best", "--out", work / "e"))
    os.symlink(data / "loop-b", data / "loop-a")
    os.symlink(data / "loop-a", data / "loop-b")
    case("13", "a train path that is a symlink loop",
         mtcli("train", *base, "--tasks", task_file(train="loop-a"), "--out", runs))
    case("13", "--upsample mail=1000000000 (run folder created: see next)",
         mtcli("train", *base, "--tasks", task_file(), "--upsample", "mail=1000000000", "--out", runs, "--name", "u"))
    long_manifest = work / "long-export"
    shutil.copytree(work / "export", long_manifest)
    manifest = json.loads((long_manifest / "manifest.json").read_text())
    manifest["max_length"] = 300
    (long_manifest / "manifest.json").write_text(json.dumps(manifest))
    case("13", "a manifest whose max_length exceeds the graph's positions",
         mtcli("score", "sst", "-", "--model", long_manifest, "--no-header", stdin="hello\n"))
    wide = data / "wide.toml"
    wide.write_text(tasks.format(name="w", train="train.tsv", labels="range = [-1e308, 1e308]")
                    .replace('kind = "binary"', 'kind = "regression"'))
    case("13", "range = [-1e308, 1e308]", mtcli("train", *base, "--tasks", wide, "--out", runs))
    # 14. smaller
    (data / "word.tsv").write_text("id\tbody\tverdict\n1\tx\tspam\n")
    case("14", "a headerless score input whose first text is `sentence` (--no-header)",
         mtcli("score", "sst", "-", "--model", work / "export", "--no-header", stdin="sentence\nanother\n"))
    (data / "folder").mkdir()
    case("14", "a train path that is a folder", mtcli("train", *base, "--tasks", task_file(train="folder"), "--out", runs))
    os.mkfifo(data / "fifo")
    case("14", "a train path that is a FIFO", mtcli("train", *base, "--tasks", task_file(train="fifo"), "--out", runs))
    case("14", 'a task name "abc\\n"', mtcli("train", *base, "--tasks", task_file(name="abc\\n"), "--out", runs))
    case("14", "--name ../x", mtcli("train", *base, "--out", runs, "--name", "../x"))
    (data / "short.csv").write_text("id,message,verdict\n1,hi,spam\n2,short\n")
    case("14", "a short row in a .csv task file",
         mtcli("train", *base, "--tasks", task_file(train="short.csv"), "--out", runs))
    print("\n| point | case | exit | last line |\n|---|---|---|---|")
    for point, what, code, line in ROWS:
        print(f"| {point} | {what} | {code} | `{line.replace('|', '/')}` |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
