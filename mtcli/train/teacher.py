"""Teachers for multitask distillation (`mtcli train --teacher`; docs/distillation.md).

A teacher is a model mtcli made that knows some of the run's tasks under the same names, with
the same classes or range: an export (`mtcli export`: the fast path, onnxruntime without
torch), a checkpoint (best/ or last/), or a run folder (its best/). One teacher of every task,
or one per task (BAM's single-task teachers); a task no teacher knows trains on its gold
labels alone.

Before the first step each task's teacher predicts every training row of the task's unit once
(class probabilities, P(positive) or a score: what the model's users see), shown with
progress. The predictions are kept in the run folder (teacher-labels.safetensors), each
task's under the digest of its teacher (the files it predicts with) and of the rows it
labelled: `--resume` reuses them and refuses a teacher that changed since, and a new run in
the same --out with the same teacher and rows takes them from its sibling instead of
labelling again. Reused labels are trusted only if they still have the digest the run's
record kept and the teacher predicts SPOT_CHECK rows drawn at random as they say. Under
torchrun each process labels its share of the rows and the shares are gathered: every rank
holds what one process would. The file's format, and its checks on
reading, are mtcli.run.teacher_labels'.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mtcli.core.errors import UserError
from mtcli.core.fileio import own_file, special_file
from mtcli.core.paths import EXPORT_MANIFEST as MANIFEST
from mtcli.core.tasks import Task
from mtcli.run.folder import BEST, RECORD, TEACHER_LABELS, is_run_dir
from mtcli.run.provenance import recorded_teacher_labels
from mtcli.run.teacher_labels import Labels, as_stored, check_predictions, read_labels
from mtcli.train.distributed import Distributed
from mtcli.train.progress import CountLines
from mtcli.train.units import Unit

WINDOW = 2048     # rows predicted between progress updates
SPOT_CHECK = 32   # rows of reused labels the teacher predicts again, drawn at random, before they are trusted
SPOT_TOLERANCE = 0.01   # of the target's span (probabilities: 1; a score: its range): devices and batching differ


@dataclass
class Teacher:
    path: Path                      # the model's folder (a run folder given: its best/)
    kind: str                       # export | checkpoint
    tasks: dict[str, Task]
    _digest: str | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        """sha256 over the files the teacher predicts with, by name and content: any change to the
        model (weights, heads, tokenizer, graphs, manifest) is another teacher; what an evaluation
        writes beside it (eval.json, plots, the model card) is not."""
        if self._digest is None:
            self._digest = files_digest(self.path, self.model_files())
        return self._digest

    def model_files(self) -> list[str]:
        """An export's manifest and the fp32 graphs and tokenizer it names; a checkpoint's files but
        the training state."""
        if self.kind == "export":
            from mtcli.inference.manifest import read_manifest

            manifest = read_manifest(self.path)
            entries = [manifest["embedding"], *manifest["tasks"].values()]
            named = {entry[key] for entry in entries for key in ("file", "head_file") if key in entry}
            return sorted({MANIFEST, manifest["tokenizer"], *named})
        from mtcli.model.checkpoint import TRAINER_STATE

        return sorted(p.name for p in self.path.iterdir() if (p.is_file() or p.is_symlink()) and p.name != TRAINER_STATE)

    def load(self, device: str) -> "LoadedTeacher":
        """The teacher's model, ready to predict and embed: onnxruntime for an export, torch for a checkpoint."""
        return (ExportTeacher if self.kind == "export" else CheckpointTeacher)(self.path, device)


class ExportTeacher:
    def __init__(self, path: Path, device: str):
        from mtcli.inference.scorer import Scorer

        self.scorer = Scorer(path, providers=("cuda", "cpu") if device.startswith("cuda") else ("cpu",))

    def score(self, task: str, rows: list[tuple[str, ...]]) -> np.ndarray:
        return self.scorer.score(task, rows)

    def embed(self, sentences: list[str]) -> np.ndarray:
        return self.scorer.embed(sentences)


class CheckpointTeacher:
    def __init__(self, path: Path, device: str):
        from mtcli.model.checkpoint import load_checkpoint

        self.device = device
        self.model, self.tokenizer, _ = load_checkpoint(path, device=device)

    def score(self, task: str, rows: list[tuple[str, ...]]) -> np.ndarray:
        from mtcli.model.predict import predict_texts

        return predict_texts(self.model, self.tokenizer, task, rows, device=self.device)[0]

    def embed(self, sentences: list[str]) -> np.ndarray:
        from mtcli.model.predict import embed_texts

        return embed_texts(self.model, self.tokenizer, sentences, device=self.device)


LoadedTeacher = ExportTeacher | CheckpointTeacher


def open_teacher(path: str | Path) -> Teacher:
    """The teacher in `path` (an export, a checkpoint, or a run folder's best/), its tasks read
    and checked; one UserError naming the path otherwise."""
    from mtcli.model.checkpoint import META, checkpoint_tasks

    path = Path(path)
    if not path.is_dir():
        problem = special_file(path) or ("is a file" if path.exists() else "not found")
        raise UserError(f"{path}: {problem}; --teacher takes a model folder: an `mtcli export` folder, a checkpoint "
                        f"(a run's best/ or last/) or a run folder")
    if os.path.lexists(path / MANIFEST):   # an export, or a damaged one: read_manifest says what is wrong
        from mtcli.inference.manifest import read_manifest_tasks

        return Teacher(path, "export", read_manifest_tasks(path))
    if not (path / META).is_file() and is_run_dir(path) and (path / BEST / META).is_file():
        path = path / BEST
    if (path / META).is_file():
        return Teacher(path, "checkpoint", checkpoint_tasks(path))
    raise UserError(f"{path}: not an mtcli model; --teacher takes an `mtcli export` folder, a checkpoint (a run's "
                    f"best/ or last/) or a run folder with a best/ checkpoint")


def files_digest(folder: Path, names: list[str]) -> str:
    digest = hashlib.sha256()
    for path in (folder / name for name in names):
        own_file(path, "teacher file")   # a link in a teacher's folder is not hashed through
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def teachers_for(paths: list[str], tasks: dict[str, Task]) -> dict[str, Teacher]:
    """Each run task's teacher (tasks no teacher knows are absent): a teacher that knows none of
    the run's tasks, a task two teachers know, or a teacher whose task differs from the run's
    (its kind, classes or range) is one UserError."""
    teachers = [open_teacher(p) for p in paths]
    chosen: dict[str, Teacher] = {}
    for name, task in tasks.items():
        having = [t for t in teachers if name in t.tasks]
        if len(having) > 1:
            raise UserError(f"--teacher: task {name!r} has two teachers, {having[0].path} and {having[1].path}: give "
                            f"each task one")
        if having:
            check_teaches(having[0], task)
            chosen[name] = having[0]
    for teacher in teachers:
        if teacher not in chosen.values():
            raise UserError(f"{teacher.path}: teaches none of the run's tasks ({', '.join(tasks)}); its tasks are "
                            f"{', '.join(teacher.tasks)}: a teacher's task must have the run's task's name")
    return chosen


def check_teaches(teacher: Teacher, task: Task) -> None:
    """The teacher predicts what the run's `task` is trained on: the same kind and arity, the same
    classes in the same order, or the same range."""
    own = teacher.tasks[task.name]
    problems = []
    if own.kind != task.kind:
        problems.append(f"is {own.kind}, the run's is {task.kind}")
    elif own.is_pair != task.is_pair:
        problems.append(f"reads {len(own.text)} text(s) a row, the run's {len(task.text)}")
    elif own.kind != "regression" and own.labels != task.labels:
        problems.append(f"has the classes {', '.join(own.labels)}, the run's {', '.join(task.labels)}")
    elif own.is_regression and tuple(own.range) != tuple(task.range):
        problems.append(f"scores in [{own.range[0]:g}, {own.range[1]:g}], the run's in [{task.range[0]:g}, "
                        f"{task.range[1]:g}]")
    if problems:
        raise UserError(f"{teacher.path}: its task {task.name!r} {problems[0]}: a teacher must predict what the run "
                        f"trains")


def rows_digest(rows: list[tuple[str, ...]]) -> str:
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


# ---------------------------------------------------------------------- labelling a run's units


def teacher_rows(unit: Unit) -> list[tuple[str, ...]]:
    return [tuple(row) for row in unit.texts]


def label_units(units: dict[str, Unit], tasks: dict[str, Task], teachers: dict[str, Teacher], *, device: str,
                console: Console, own: Path | None = None, siblings: list[Path] = (),
                resuming: bool = False, embeddings: bool = False, every: float,
                dist: Distributed = Distributed()) -> dict[str, Labels]:
    """Each taught task's predictions over its unit's rows (and with `embeddings` the teacher's
    embedding of each text): from the run's own labels file (`own`), a sibling run's with the
    same teacher and rows, or the teacher itself. On resume a teacher that changed since it
    labelled the run's rows is refused. `every`: seconds between progress lines where no bar shows;
    `dist`: the processes that share the labelling (torchrun), each its share of every task's rows."""
    rows_of = {name: teacher_rows(unit) for name, unit in units.items()
               if any(task in teachers for task in unit.tasks)}
    digests = {name: rows_digest(rows) for name, rows in rows_of.items()}
    wanted = {task: (unit, digests[name], rows_of[name]) for name, unit in units.items()
              for task in unit.tasks if task in teachers}
    taught = {task: tasks[task] for task in wanted}
    found: dict[str, Labels] = {}
    if own is not None and own.is_file():
        recorded = recorded_teacher_labels(own.parent)
        for name, labels in read_labels(own, taught).items():
            unit, rows, _ = wanted[name]
            if labels.rows != rows or len(labels.values) != len(unit) or (embeddings and labels.embeddings is None):
                continue
            if recorded.get(name) != labels.sha256:
                if resuming and name in recorded:
                    raise UserError(f"{own}: the teacher's {name} labels were changed since this run wrote them "
                                    f"(sha256 {recorded[name][:12]}... in {own.parent / RECORD}, now "
                                    f"{labels.sha256[:12]}...): move the file away to label again, or start a new run")
                continue   # labels the run's record does not vouch for are labelled again
            if labels.teacher != teachers[name].digest:
                if resuming:
                    raise UserError(f"{teachers[name].path}: changed since it labelled this run's {name} rows "
                                    f"(sha256 {labels.teacher[:12]}..., now {teachers[name].digest[:12]}...): "
                                    f"restore it to resume exactly, or start a new run")
                continue
            found[name] = labels
    origin = {name: "own" for name in found}

    def fits(name: str, entry: dict) -> bool:   # a sibling's entry: the same teacher and rows
        return (entry["rows"] == wanted[name][1] and entry["teacher"] == teachers[name].digest
                and entry["count"] == len(wanted[name][0]) and (entry["embeddings"] or not embeddings))

    for sibling in siblings:
        missing = [t for t in wanted if t not in found]
        if not missing:
            break
        try:
            candidates = read_labels(sibling, {t: taught[t] for t in missing}, accept=fits)
        except UserError:
            continue   # another run's damaged file: label afresh
        vouched = recorded_teacher_labels(sibling.parent)
        for name, labels in candidates.items():
            if vouched.get(name) != labels.sha256:
                console.print(f"[yellow]note[/] teacher {name}: the labels of {sibling.parent.name} are not reused: "
                              f"they do not match the digest its record ({RECORD}) keeps", highlight=False)
                continue
            found[name], origin[name] = labels, sibling.parent.name
    models = Models(device)
    found = _spot_checked(found, origin, wanted, teachers, models, console, resuming, dist)
    # every process labels the same tasks (a sibling's file written between two processes' looks
    # would otherwise leave one rank labelling alone, waiting for the others)
    missing = [t for t in wanted if not dist.all_true(t in found, device)]
    if missing:
        found.update(_label(missing, wanted, taught, teachers, models, device, console, embeddings, every, dist))
    return found


class Models:
    """The teachers' loaded models, each loaded once (the spot check and the labelling share them)."""

    def __init__(self, device: str):
        self.device, self._loaded = device, {}

    def __getitem__(self, teacher: Teacher) -> LoadedTeacher:
        if id(teacher) not in self._loaded:
            self._loaded[id(teacher)] = teacher.load(self.device)
        return self._loaded[id(teacher)]


def _spot_checked(found: dict[str, Labels], origin: dict[str, str], wanted: dict, teachers: dict[str, Teacher],
                  models: Models, console: Console, resuming: bool, dist: Distributed) -> dict[str, Labels]:
    """The reused labels that the teacher confirms: it predicts SPOT_CHECK of each task's rows again,
    drawn at random now, and they must match within SPOT_TOLERANCE. Labels edited together with the
    run's record pass the digest check, never this one (which rows are drawn is not known until
    now). The run's own labels on resume that fail are refused; a sibling's are labelled again."""
    if not found:
        return found
    rng = np.random.default_rng(secrets.randbits(64))
    kept = {}
    for name, labels in found.items():
        teacher = teachers[name]
        rows = wanted[name][2]
        picks = np.sort(rng.choice(len(rows), size=min(SPOT_CHECK, len(rows)), replace=False))
        task = teacher.tasks[name]
        span = task.range[1] - task.range[0] if task.is_regression else 1.0
        fresh = np.asarray(models[teacher].score(name, [rows[i] for i in picks]), dtype=np.float32)
        agree = fresh.shape == labels.values[picks].shape and bool(
            np.all(np.abs(fresh - labels.values[picks]) <= SPOT_TOLERANCE * span))
        if dist.all_true(agree, models.device):
            kept[name] = labels
            if origin[name] != "own":
                console.print(f"[bold]teacher[/] {name}: the labels of {origin[name]} reused (the same teacher and "
                              f"rows; {len(picks)} of them predicted again and equal)", highlight=False)
        elif origin[name] == "own" and resuming:
            raise UserError(f"{teacher.path}: predicts {len(picks)} randomly drawn {name} rows otherwise than this "
                            f"run's {TEACHER_LABELS} records: the labels were edited: move the file away to label "
                            f"again, or start a new run")
        else:
            console.print(f"[yellow]note[/] teacher {name}: the labels of {origin[name]} are not reused: the teacher "
                          f"predicts {len(picks)} randomly drawn rows otherwise", highlight=False)
    return kept


def _label(names: list[str], wanted: dict, tasks: dict[str, Task], teachers: dict[str, Teacher], models: Models,
           device: str, console: Console, embeddings: bool, every: float, dist: Distributed) -> dict[str, Labels]:
    """The teachers' predictions for `names` (and their embeddings of every distinct text), each
    teacher loaded once, with progress (a bar, or lines where no bar shows): this process's
    share of each task's rows, gathered with the other processes' shares."""
    labels = {}
    lines = CountLines(console, every)
    by_teacher: dict[int, list[str]] = {}
    for name in names:
        by_teacher.setdefault(id(teachers[name]), []).append(name)
    with Progress(TextColumn("[bold]teacher[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console, transient=False) as progress:
        for group in by_teacher.values():
            teacher = teachers[group[0]]
            model = models[teacher]
            for name in group:
                rows = wanted[name][2]
                split = dist if len(rows) >= dist.world else Distributed()   # fewer rows than processes: each labels all
                share = rows[split.share(len(rows))]
                shared = f", {len(share):,} of them in this process of {split.world}" if split.enabled else ""
                console.print(f"[bold]teacher[/] {name}: {len(rows):,} rows to label{shared}", highlight=False)
                bar = progress.add_task(f"{name} ({teacher.kind} {teacher.path})", total=len(share))
                lines.start(f"teacher {name}: rows labelled", len(share))
                parts = []
                for start in range(0, len(share), WINDOW):
                    parts.append(model.score(name, share[start:start + WINDOW]))
                    progress.update(bar, advance=len(parts[-1]))
                    lines.advance(len(parts[-1]))
                values = split.gather_shares(np.concatenate(parts), len(rows), device)
                values = check_predictions(tasks[name], values, len(rows), str(teacher.path))
                vectors = split.gather_shares(_embed_rows(model, share, progress, lines, name, teacher.path),
                                              len(rows), device) if embeddings else None
                labels[name] = Labels(teacher.digest, wanted[name][1], str(teacher.path), values, vectors)
    return labels


def _embed_rows(model: LoadedTeacher, rows: list[tuple[str, ...]], progress: Progress, lines: CountLines,
                task: str, source: Path) -> np.ndarray:
    """The teacher's embedding of every text of `rows`, (rows, texts, width), each distinct text embedded once."""
    index: dict[str, int] = {}
    positions = np.array([[index.setdefault(text, len(index)) for text in row] for row in rows], dtype=np.int64)
    sentences = list(index)
    bar = progress.add_task(f"{task} embeddings", total=len(sentences))
    lines.start(f"teacher {task}: sentences embedded", len(sentences))
    parts = []
    for start in range(0, len(sentences), WINDOW):
        parts.append(model.embed(sentences[start:start + WINDOW]))
        progress.update(bar, advance=len(parts[-1]))
        lines.advance(len(parts[-1]))
    vectors = np.concatenate(parts)
    if vectors.ndim != 2 or len(vectors) != len(sentences) or not np.isfinite(vectors).all():
        raise UserError(f"{source}: the teacher's embeddings are not one finite vector per sentence (shape "
                        f"{vectors.shape}); the teacher is damaged: export it again")
    return as_stored(vectors[positions])


def teach(units: dict[str, Unit], tasks: dict[str, Task], teachers: dict[str, Teacher], config, run_dir: Path,
          device: str, console: Console, *, own: bool, resuming: bool,
          dist: Distributed = Distributed()) -> tuple[dict[str, Unit], dict[str, Labels]]:
    """The units with their teachers' predictions (and embeddings, with --distill-embeddings):
    the run's own labels (`own`: the run folder is given, a resume), a sibling run's in --out, or
    labelled now; and the labels, which the run keeps in its folder."""
    from mtcli.train.distillation import Annealing

    labels = label_units(units, tasks, teachers, device=device, console=console,
                         own=run_dir / TEACHER_LABELS if own else None,
                         siblings=sibling_labels(Path(config.out), run_dir), resuming=resuming,
                         embeddings=config.distill_embeddings > 0, every=config.progress_every, dist=dist)
    for task in tasks:
        teacher = teachers.get(task)
        console.print(f"[bold]teacher[/] {task}: " + (f"{teacher.path} ({teacher.kind})" if teacher else
                      "none (its gold labels alone)"), highlight=False)
    console.print(f"[bold]distillation[/] {Annealing.parse(config.teacher_annealing).describe()}, "
                  f"temperature {config.teacher_temperature:g}"
                  + (f", embeddings {config.distill_embeddings:g}" if config.distill_embeddings else ""))
    return with_teacher(units, labels), labels


def with_teacher(units: dict[str, Unit], labels: dict[str, Labels]) -> dict[str, Unit]:
    """The units with their tasks' teacher predictions attached (the step's targets, mtcli.model.heads)."""
    return {name: replace(unit, teacher={t: labels[t].values for t in unit.tasks if t in labels},
                          teacher_embeddings={t: labels[t].embeddings for t in unit.tasks
                                              if t in labels and labels[t].embeddings is not None})
            for name, unit in units.items()}


def sibling_labels(out: Path, run_dir: Path) -> list[Path]:
    """Other runs' labels files under --out, newest first (a later run of one teacher reuses them)."""
    if not out.is_dir():
        return []
    found = [p for p in out.glob(f"*/{TEACHER_LABELS}") if p.parent != run_dir and p.is_file() and not p.is_symlink()]
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:50]
