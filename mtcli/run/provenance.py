"""What a run read, so that it resumes anywhere and notices when its data changed: the task
file and every data file, by resolved path, with size and sha256 (`data.json` in the run
folder). Torch-free.

`--resume` reads the files at the recorded paths, and only if they still have the recorded
digest; `eval` of a run's checkpoint may read them the same way. The record comes from a
run folder, which may come from someone else: every field is checked, and a path is only
ever read to compare its digest before anything else is done with it.
"""

import hashlib
import re
from pathlib import Path

from mtcli.core.errors import UserError
from mtcli.core.fileio import own_file, read_json_dict, write_json
from mtcli.core.tasks import REQUIRED_SPLITS, SPLITS, Task
from mtcli.run.folder import RECORD

FORMAT = "mtcli-data"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entry(path: str | Path) -> dict:
    path = Path(path).resolve()
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": sha256_of(path)}


def describe_sources(task_file: str | Path | None, tasks: dict[str, Task], unlabeled=()) -> dict:
    """The record of a run that read `tasks` (declared in `task_file`; None: the built-in ones):
    the train and dev files it read, the test files declared beside them (for `eval --split
    test` of its checkpoints), and the unlabeled files of the tasks in `unlabeled` (a teacher
    labelled them)."""
    def splits(task: Task) -> dict:
        return {split: _entry(path) for split in SPLITS if (path := task.file(split)) is not None
                and (split in REQUIRED_SPLITS or path.is_file())}

    record = {"format": FORMAT, "task_file": None if task_file is None else _entry(task_file),
              "files": {name: splits(task) for name, task in tasks.items()}}
    read = {name: [_entry(path) for path in tasks[name].unlabeled] for name in unlabeled if tasks[name].unlabeled}
    if read:
        record["unlabeled"] = read
    return record


def write_record(run_dir: Path, record: dict) -> None:
    write_json(run_dir / RECORD, record)


def record_teacher_labels(run_dir: Path, digests: dict[str, str]) -> None:
    """Keep in the run's record the digest of each task's teacher labels as the run wrote them
    (teacher-labels.safetensors): a resume, or a sibling run, reuses only labels that still match."""
    record = read_record(run_dir)
    if record is not None:
        write_record(run_dir, {**record, "teacher_labels": dict(digests)})


def recorded_teacher_labels(run_dir: Path) -> dict[str, str]:
    """The digests of the teacher labels the run wrote, by task (empty: none recorded, or no record)."""
    try:
        record = read_record(run_dir)
    except UserError:
        return {}
    return dict(record.get("teacher_labels", {})) if record is not None else {}


def read_record(run_dir: str | Path) -> dict | None:
    """A run's record, checked field by field; None if there is none (a checkpoint copied without
    its run folder)."""
    path = own_file(Path(run_dir) / RECORD, "run record")
    if not path.exists():
        return None
    record = read_json_dict(path)

    def bad(where: str):
        raise UserError(f"{path}: {where}: damaged (not what mtcli writes); restore it from a copy, or start a "
                        f"new run")

    if record is None or record.get("format") != FORMAT:
        bad("format")
    entries = [("task_file", record.get("task_file"))] if record.get("task_file") is not None else []
    files = record.get("files")
    if not isinstance(files, dict):
        bad("files")
    for task, splits in files.items():
        if not isinstance(splits, dict):
            bad(f"files.{task}")
        entries += [(f"files.{task}.{split}", entry) for split, entry in splits.items()]
    unlabeled = record.get("unlabeled", {})
    if not isinstance(unlabeled, dict) or not all(isinstance(v, list) for v in unlabeled.values()):
        bad("unlabeled")
    entries += [(f"unlabeled.{task}[{i}]", entry) for task, files in unlabeled.items() for i, entry in enumerate(files)]
    labels = record.get("teacher_labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) and _SHA256.fullmatch(v) for v in labels.values()):
        bad("teacher_labels")
    for where, entry in entries:
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and Path(entry["path"]).is_absolute()
                and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])):
            bad(where)
    return record


def check_unchanged(entry: dict, what: str) -> Path:
    """The recorded file, if it is still there with the recorded content; one UserError otherwise."""
    path = Path(entry["path"])
    if not path.is_file():
        raise UserError(f"{path}: not found; the run read {what} from there: put it back, or start a new run")
    if sha256_of(path) != entry["sha256"]:
        raise UserError(f"{path}: changed since the run read it as {what} (sha256 {entry['sha256'][:12]}..., now "
                        f"{sha256_of(path)[:12]}...): restore it to resume exactly, or start a new run")
    return path


def check_sources(record: dict) -> None:
    """The task file and every train and dev file of the record unchanged (resume reads
    nothing before this passes)."""
    if record.get("task_file") is not None:
        check_unchanged(record["task_file"], "its task file")
    for task, splits in record["files"].items():
        for split, entry in splits.items():
            if split in REQUIRED_SPLITS:
                check_unchanged(entry, f"the {split} file of task {task!r}")
    for task, entries in record.get("unlabeled", {}).items():
        for entry in entries:
            check_unchanged(entry, f"an unlabeled file of task {task!r}")


def recorded_files(record: dict, task: str, splits) -> dict[str, str] | None:
    """split -> path of the task's recorded files among `splits`, each checked unchanged; None
    if the task is not in the record."""
    recorded = record["files"].get(task)
    if recorded is None:
        return None
    return {split: str(check_unchanged(recorded[split], f"the {split} file of task {task!r}"))
            for split in splits if split in recorded}
