"""Atomic file writes: a file appears under its final name complete, or not at all.

Everything mtcli writes (checkpoints, ONNX graphs, manifests, eval.json,
predictions, scores) goes through `atomic_path`: write to a temporary name in the
same folder, fsync, rename. A crash or a full disk leaves no final-named partial file.
"""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fix_mode(path: Path, directory: bool = False) -> None:
    """mkstemp/mkdtemp create private files; give them the usual mode under the umask."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextmanager
def atomic_path(final: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success fsync it and rename it into place."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    fix_mode(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, value) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


@contextmanager
def staged_dir(final: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder next to `final`; on success swap it in as `final`.

    The previous `final` is renamed aside first and removed after the swap, so a crash
    leaves either the old folder (possibly as `.NAME.old`, see `recover_dir`) or the new
    one, never a mix. Entries of the old folder named `.git*` (e.g. .gitkeep) carry over."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".staging", dir=final.parent))
    fix_mode(staging, directory=True)
    try:
        yield staging
        old = final.with_name(f".{final.name}.old")
        if final.exists():
            for item in final.iterdir():
                if item.name.startswith(".git"):
                    shutil.move(str(item), staging / item.name)
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def recover_dir(final: str | Path) -> Path:
    """After a crash between the two renames of `staged_dir`, put the old folder back."""
    final = Path(final)
    old = final.with_name(f".{final.name}.old")
    if not final.exists() and old.is_dir():
        old.rename(final)
    return final
