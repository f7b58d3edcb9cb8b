"""Writing files without losing any: the only way mtcli puts bytes on disk.

Three rules, each enforced here once:
- A file appears under its final name complete, or not at all (`atomic_path`: a
  temporary name in the same folder, fsync, rename). A folder is built aside and
  swapped in whole (`staged_dir`).
- mtcli never removes or overwrites what it did not write: a folder is replaced only
  when it is empty or is a folder of the same kind that mtcli wrote and holds nothing
  else (a link in it is not mtcli's); a file mtcli names itself (compare.md, eval.json)
  is never written through a link planted under its name; the output a user names (score
  -o, --out) may be a link, written through; a device or FIFO is written in place; an
  output that is also the input is refused.
- Temporary names carry the writer's process id (`.NAME.mtcli-PID-XXXXXXXX.tmp`), so
  the leftovers of a killed process are recognised and removed by the next command
  that writes in that folder, and nothing else is.

Errors name the user's path, never a temporary one. Torch-free.
"""

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, TextIO

from mtcli.core.errors import UserError, cut

_TEMP = re.compile(r"^\.(?P<name>.+)\.mtcli-(?P<pid>\d+)-[0-9a-f]{8}\.(?P<kind>tmp|staging|old)$")


def _temp_path(final: Path, kind: str) -> Path:
    return final.with_name(f".{final.name}.mtcli-{os.getpid()}-{secrets.token_hex(4)}.{kind}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fix_mode(path: Path, directory: bool = False) -> None:
    """The mode an ordinary file or folder gets under the umask (libraries and mkstemp make 0600 ones)."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, someone else's
        return False
    return False


def sweep_stale(folder: str | Path) -> list[Path]:
    """Remove the temporary files and staging folders that a killed mtcli left in `folder`.

    Only names of mtcli's own pattern whose process is gone (and which belong to this
    user) are touched. A folder set aside by an interrupted swap (`.NAME...old`) is put
    back under NAME when NAME is missing, and removed otherwise."""
    folder = Path(folder)
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP.match(entry.name)
        if not match or not _process_gone(int(match["pid"])):
            continue
        try:
            if entry.lstat().st_uid != os.getuid():
                continue
            final = folder / match["name"]
            if match["kind"] == "old" and not final.exists():
                entry.rename(final)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed.append(entry)
        except OSError:
            continue  # another process got there first, or it is not ours to remove after all
    return removed


def _name_user_path(error: OSError, temporary: Path, final: Path) -> None:
    """Make an OSError about a temporary path (or about no path: a failed write) name the user's path."""
    if error.filename is None:
        error.filename = str(final)
    for attribute in ("filename", "filename2"):
        name = getattr(error, attribute, None)
        if name is not None and str(name).startswith(str(temporary)):
            setattr(error, attribute, str(final) + str(name)[len(str(temporary)):])


@contextmanager
def atomic_path(final: str | Path, follow_link: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `final`; on success fsync it and rename it into place.

    A symlink at `final` is refused, unless `follow_link` (the user named this path: the
    link's target is replaced, the link stays)."""
    shown = Path(final)
    if not follow_link and shown.is_symlink():
        raise UserError(f"{shown}: is a link, and mtcli writes its own files, never through links: remove the link "
                        f"or pick another output folder (nothing was changed)")
    final = Path(os.path.realpath(shown))
    if final.is_dir():
        raise UserError(f"{shown}: is a folder; pass a file name")
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    tmp = _temp_path(final, "tmp")
    try:
        tmp.touch(mode=0o600, exist_ok=False)
        yield tmp
        fix_mode(tmp)  # whatever created the bytes (safetensors, torch.save), the mode is the usual one
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            _name_user_path(e, tmp, shown)
        raise


def open_append(path: str | Path, binary: bool = False):
    """A log of mtcli's own (metrics.jsonl, a worker's log) opened to append to, never through a
    link planted under its name, never a device or FIFO: a UserError naming the file otherwise."""
    path = Path(path)
    try:
        # O_NONBLOCK: a FIFO is refused at once (ENXIO, or the check below), not waited on for a reader
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, 0o666)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"{path}: is a link, and mtcli writes its own files, never through links: remove the "
                            f"link (nothing was changed)") from None
        if e.errno == errno.ENXIO:
            raise UserError(f"{path}: is not a regular file; mtcli appends only to its own logs: remove it") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: is not a regular file; mtcli appends only to its own logs: remove it")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab") if binary else os.fdopen(fd, "a", encoding="utf-8")


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, value) -> Path:
    return write_text(path, json.dumps(value, indent=2, sort_keys=False) + "\n")


def _carried(name: str) -> bool:
    """Entries of a replaced folder that are the repository's, not the folder's (export/.gitkeep)."""
    return name.startswith(".git")


def ensure_replaceable(folder: Path, ours: set[str] | None, what: str, shown: Path | None = None) -> None:
    """Refuse to replace `folder` unless it is empty or `what` and holds only the files in `ours`.

    `ours` is None when the folder is not `what` at all."""
    shown = shown or folder
    if not folder.exists():
        return
    if not folder.is_dir():
        raise UserError(f"{shown}: is a file, not a folder; pick another output folder")
    entries = [e for e in folder.iterdir() if not _carried(e.name) and not _TEMP.match(e.name)]
    if not entries:
        return
    if ours is None:
        raise UserError(f"{shown}: folder is not empty and is not {what}; mtcli replaces only an empty folder or "
                        f"{what}: pick another output folder (nothing was changed)")
    foreign = sorted(e.name for e in entries if e.name not in ours or e.is_symlink())
    if foreign:
        what_it_is = "is a link, which mtcli never makes" if (folder / foreign[0]).is_symlink() else \
            "was not written by mtcli"
        raise UserError(f"{shown / foreign[0]}: {what_it_is}, and {shown} is replaced as a whole: "
                        f"move {'it' if len(foreign) == 1 else f'it and {len(foreign) - 1} more'} elsewhere or pick "
                        f"another output folder (nothing was changed)")


@contextmanager
def staged_dir(final: str | Path, files_of: Callable[[Path], set[str] | None], what: str) -> Iterator[Path]:
    """Yield an empty staging folder next to `final`; on success swap it in as `final`.

    `files_of(folder)` names the files a folder of this kind holds when mtcli wrote it
    (None: not such a folder); the old `final` is replaced only if it is empty or holds
    nothing else, checked before any work starts. The old folder is renamed aside first
    and removed after the swap, so a crash leaves the old folder (possibly still aside,
    restored by `sweep_stale`) or the new one, never a mix. Entries named `.git*`
    (e.g. .gitkeep) carry over."""
    shown = Path(final)
    final = Path(os.path.realpath(shown))
    ensure_replaceable(final, files_of(final) if final.is_dir() else None, what, shown)
    final.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(final.parent)
    staging = _temp_path(final, "staging")
    staging.mkdir()
    fix_mode(staging, directory=True)
    try:
        yield staging
        ensure_replaceable(final, files_of(final) if final.is_dir() else None, what, shown)  # still true?
        try:
            if final.exists():
                old = _temp_path(final, "old")
                for item in final.iterdir():
                    if _carried(item.name):
                        shutil.move(str(item), staging / item.name)
                final.rename(old)
                staging.rename(final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                staging.rename(final)
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
            raise UserError(f"{shown}: another process wrote or moved it while this one worked (two commands with "
                            f"one output at once?); this run's result was discarded: run it again") from None
    except BaseException as e:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(e, OSError):
            _name_user_path(e, staging, shown)
        raise


def recover_dir(final: str | Path) -> Path:
    """After a crash between the two renames of `staged_dir`, put the old folder back."""
    final = Path(final)
    sweep_stale(final.parent)
    return final


# ---------------------------------------------------------------- outputs named by the user

def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths are one file (through links, hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_stream(path: str | Path) -> bool:
    """A character device, FIFO or socket (also behind a symlink): written in place, never renamed over."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


@contextmanager
def output_stream(path: str | Path | None) -> Iterator[TextIO]:
    """A text stream for a user-named output: '-' or None is stdout; a device or FIFO is
    opened and written in place; a file (or a symlink's target) is written atomically.
    Opened with newline='' so a csv writer controls every line end."""
    if path is None or str(path) == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        if is_stream(path):
            with open(path, "w", encoding="utf-8", newline="") as out:
                yield out
            return
        with atomic_path(path, follow_link=True) as tmp, open(tmp, "w", encoding="utf-8", newline="") as out:
            yield out
    except OSError as e:
        if e.filename is None:  # a failed write() names no file: name the output
            e.filename = str(path)
        raise


def refuse_overwrite_unless(path: Path, ours: Callable[[Path], bool]) -> None:
    """Refuse to replace an existing file at `path` that `ours` does not recognise as mtcli's."""
    if path.exists() and not ours(path):
        raise UserError(f"{path}: exists and was not written by mtcli; move it away or pick another --out "
                        f"(nothing was changed)")


# ---------------------------------------------------------------- reading what anyone may have written
#
# Every file mtcli reads is first checked to be a regular file outside the kernel's own file
# systems: a device (/dev/zero reads forever), a FIFO (blocks forever), a socket, or a file
# under /proc or /sys (/proc/self/environ is the process's environment) is refused in one line.
# Documents (task files, recipes, spaces, manifests, run records) are read whole, so their size
# is bounded too; data files stream, so theirs is not.

DOCUMENT_LIMIT = 32 * 2**20   # bytes: the largest task file, recipe, manifest or run record mtcli reads whole
KERNEL_ROOTS = ("/proc", "/sys")


def non_regular(mode: int) -> str | None:
    """What a file of `mode` is when it is neither a regular file nor a folder, in a few words
    (None for those two)."""
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a file"
    return "is not a regular file"


def special_file(path: str | Path) -> str | None:
    """What makes `path` no file to read data from (None: a regular file or a folder, or nothing
    there yet): a device, FIFO or socket (`non_regular`), or a file of the kernel's /proc or /sys."""
    real = os.path.realpath(path)
    for root in KERNEL_ROOTS:
        if real == root or real.startswith(root + "/"):
            return f"is under {root}, the kernel's view of the system, not a file of yours"
    try:
        return non_regular(os.stat(path).st_mode)
    except OSError:
        return None   # missing or unreadable: the open that follows says which


def check_regular(path: str | Path, what: str = "file") -> None:
    """Refuse to read `path` if it is a device, FIFO, socket or kernel file (see `special_file`)."""
    problem = special_file(path)
    if problem:
        raise UserError(f"{path}: {problem}; pass a regular {what}")


def own_file(path: str | Path, what: str = "file") -> Path:
    """`path`, a file of a folder mtcli wrote (a run, a checkpoint, an export, an installed
    backbone), checked as such before it is opened: the entry itself a regular file, never a
    link (mtcli makes none, so one there was planted: /proc/self/environ behind recipe.toml
    would be quoted into a model card), a device, FIFO, socket or kernel file. Missing is left
    to the open that follows (it names the file); anything else is one UserError naming it."""
    path = Path(path)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({(e.strerror or type(e).__name__).lower()})") from None
    if stat.S_ISLNK(mode):
        raise UserError(f"{path}: is a link, and mtcli makes none in its folders: the {what} was replaced by someone "
                        f"else; put the real file back (or export / train again)")
    check_regular(path, what)
    if stat.S_ISDIR(mode):
        raise UserError(f"{path}: is a folder, not a {what}; put the real file back (or export / train again)")
    return path


def read_arrays(path: str | Path, what: str, damaged: Callable[[str], None],
                select: Callable[[dict, list[str]], Iterable[str]] | None = None) -> tuple[dict, dict]:
    """A safetensors file anyone may have written (plain arrays: nothing in it is executed or
    unpickled): its metadata and its arrays, as numpy; `select(metadata, names)`: the names of
    the arrays to read (default: every one; the header is read first, the rest only as chosen).
    `damaged(problem)` is called (and raises) where safetensors cannot read it; a missing file
    raises FileNotFoundError."""
    from safetensors import SafetensorError, safe_open

    check_regular(path, what)
    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata, names = fh.metadata() or {}, list(fh.keys())
            chosen = names if select is None else [n for n in dict.fromkeys(select(metadata, names)) if n in names]
            return metadata, {name: fh.get_tensor(name) for name in chosen}
    except FileNotFoundError:
        raise
    except (SafetensorError, OSError, ValueError) as e:
        damaged(f"not a safetensors file ({str(e).splitlines()[0][:120] if str(e) else type(e).__name__})")
        raise


def open_to_read(path: str | Path, what: str = "file") -> BinaryIO:
    """`path` opened for reading bytes, once checked to be a regular file; missing, a folder or
    unreadable is one UserError naming it (`what`: the kind of file, "task file", ...)."""
    check_regular(path, what)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise UserError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; pass a {what}") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None


def read_document(path: str | Path, what: str, limit: int = DOCUMENT_LIMIT) -> str:
    """The text of a document read whole (UTF-8), refused in one line when it is not a regular
    file, is missing, is a folder, is larger than `limit` bytes or is not UTF-8."""
    path = Path(path)
    with open_to_read(path, what) as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:
        size = f"{limit // 2**20} MiB" if limit >= 2**20 else f"{limit // 2**10} KiB"
        raise UserError(f"{path}: larger than {size}; a {what} is far smaller: is this the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not valid UTF-8; save the {what} as UTF-8") from None


def read_head(path: str | Path, size: int = 4096) -> bytes | None:
    """The first `size` bytes of a regular file (what tells whose file it is), or None where
    there is none to read: missing, unreadable, special."""
    if special_file(path):
        return None
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return None


def parse_json(text: str | bytes):
    """json.loads, with every way a hostile text fails (bad JSON, nesting deep enough to exhaust
    the parser's recursion) as one ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to be read") from None


def read_json(path: str | Path, what: str):
    """A JSON document read whole (read_document's checks, one UserError each): its value, or a
    ValueError saying in a line of at most 160 characters why it is no JSON."""
    try:
        return parse_json(read_document(path, what))
    except ValueError as e:
        raise ValueError(cut(str(e).splitlines()[0], 160)) from None


def read_json_object(path: str | Path, what: str, fix: str) -> dict:
    """A JSON object anyone may have written (an encoder's config.json, a manifest, a run's
    record): its value, or one UserError naming the file, what is wrong with it and `fix`, what
    to do ("re-run `mtcli export`")."""
    try:
        value = read_json(path, what)
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e}); {fix}") from None
    if not isinstance(value, dict):
        raise UserError(f"{path}: not a JSON object; {fix}")
    return value


def read_json_dict(path: Path) -> dict | None:
    """A JSON object mtcli may have written (a run record, a marker), or None when there is none
    that reads as one: missing, special, too large, not JSON, not an object."""
    with contextlib.suppress(OSError, ValueError, UserError):
        value = read_json(path, "JSON file")
        return value if isinstance(value, dict) else None
    return None


def read_toml(path: str | Path, what: str) -> tuple[str, dict]:
    """A TOML file anyone may have written (a task file, a recipe, a sweep's space): its text (for
    line numbers in errors) and document, or one UserError naming the file and what to do.
    `what` names the kind of file: "task file", "recipe file", ..."""
    import tomllib

    path = Path(path)
    text = read_document(path, what)
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML ({e})") from None
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to be a {what}") from None
