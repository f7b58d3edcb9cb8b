"""mtcli.core.fileio: atomic files, folders replaced only when they are mtcli's, leftovers of
killed processes swept, outputs through links and devices, errors naming the user's path."""

import errno
import os
import stat
import subprocess
import sys

import pytest

from mtcli.core.errors import UserError
from mtcli.core.fileio import atomic_path, ensure_replaceable, output_stream, same_file, staged_dir, sweep_stale, write_text


def _files_of_kind(folder):
    """A folder 'of this kind' holds marker.txt; mtcli writes marker.txt and data.bin into it."""
    return {"marker.txt", "data.bin"} if (folder / "marker.txt").is_file() else None


def _stage(final, files):
    with staged_dir(final, _files_of_kind, "a test folder") as staging:
        for name, text in files.items():
            write_text(staging / name, text)


def test_staged_dir_replaces_an_empty_or_own_folder(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / ".gitkeep").touch()
    _stage(final, {"marker.txt": "1", "data.bin": "a"})
    assert sorted(p.name for p in final.iterdir()) == [".gitkeep", "data.bin", "marker.txt"]
    _stage(final, {"marker.txt": "2"})  # a folder of its own kind is replaced whole
    assert (final / "marker.txt").read_text() == "2" and not (final / "data.bin").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging or old folder left


@pytest.mark.parametrize("setup, fragment", [
    (lambda f: (f / "notes.txt").write_text("mine"), "not empty and is not a test folder"),
    (lambda f: (f / "subdir").mkdir(), "not empty and is not a test folder"),
    (lambda f: ((f / "marker.txt").write_text("1"), (f / "notes.txt").write_text("mine")), "notes.txt: was not written"),
])
def test_staged_dir_refuses_a_folder_holding_anything_else(tmp_path, setup, fragment):
    final = tmp_path / "out"
    final.mkdir()
    setup(final)
    before = sorted(p.name for p in final.iterdir())
    with pytest.raises(UserError, match=fragment):
        _stage(final, {"marker.txt": "new"})
    assert sorted(p.name for p in final.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_dir_refuses_a_file_and_writes_through_a_symlink(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        _stage(tmp_path / "file", {"marker.txt": "1"})
    target = tmp_path / "target"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    _stage(tmp_path / "link", {"marker.txt": "1"})
    assert (tmp_path / "link").is_symlink() and (target / "marker.txt").read_text() == "1"


def test_atomic_path_writes_through_a_symlink_the_user_named_with_the_usual_mode(tmp_path):
    target = tmp_path / "real.txt"
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    with atomic_path(link, follow_link=True) as tmp:
        os.chmod(tmp, 0o600)  # as safetensors and torch.save leave their files
        tmp.write_text("hello")
    assert link.is_symlink() and target.read_text() == "hello"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_errors_name_the_users_path_not_the_temporary_one(tmp_path):
    final = tmp_path / "scores.tsv"
    with pytest.raises(OSError) as caught:
        with atomic_path(final) as tmp:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert caught.value.filename == str(final)
    with pytest.raises(OSError) as caught:
        with atomic_path(final):
            raise OSError(errno.ENOSPC, "No space left on device")  # a failed write() names no file
    assert caught.value.filename == str(final)
    assert not list(tmp_path.iterdir())


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_leftovers_of_a_killed_process_are_swept_and_nothing_else(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale_dir = tmp_path / f".export.mtcli-{dead}-0123abcd.staging"
    stale_file = tmp_path / f".scores.tsv.mtcli-{dead}-89abcdef.tmp"
    live_file = tmp_path / f".other.tsv.mtcli-{alive}-00000000.tmp"
    aside = tmp_path / f".best.mtcli-{dead}-aaaaaaaa.old"  # a swap killed between its two renames
    foreign = [tmp_path / ".export.abc123.staging", tmp_path / "notes.mtcli-1-0123abcd.tmp", tmp_path / ".x.tmp"]
    stale_dir.mkdir()
    (stale_dir / "sst.onnx").write_bytes(b"half")
    aside.mkdir()
    (aside / "mtcli.json").write_text("{}")
    for path in (stale_file, live_file, *foreign):
        path.write_text("x")
    write_text(tmp_path / "eval.json", "{}")  # any write in the folder sweeps it
    assert not stale_dir.exists() and not stale_file.exists()
    assert (tmp_path / "best" / "mtcli.json").is_file() and not aside.exists()  # put back, not removed
    assert live_file.exists() and all(p.exists() for p in foreign)
    assert sweep_stale(tmp_path) == []


def test_output_stream_writes_devices_and_fifos_in_place(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    reader = subprocess.Popen(["cat", str(fifo)], stdout=subprocess.PIPE)
    with output_stream(fifo) as out:
        out.write("through the fifo\n")
    assert reader.communicate(timeout=10)[0] == b"through the fifo\n"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with output_stream(os.devnull) as out:
        out.write("nothing")
    assert stat.S_ISCHR(os.stat(os.devnull).st_mode)
    if os.path.exists("/dev/full"):
        with pytest.raises(OSError) as caught:
            with output_stream("/dev/full") as out:
                out.write("x" * 100_000)
        assert caught.value.errno == errno.ENOSPC and caught.value.filename == "/dev/full"


def test_same_file_sees_links(tmp_path):
    a = tmp_path / "a.tsv"
    a.write_text("x")
    (tmp_path / "soft").symlink_to(a)
    os.link(a, tmp_path / "hard")
    assert same_file(a, tmp_path / "soft") and same_file(a, tmp_path / "hard")
    assert not same_file(a, tmp_path / "missing")


def test_ensure_replaceable_allows_missing_and_empty(tmp_path):
    ensure_replaceable(tmp_path / "missing", None, "x")
    (tmp_path / "empty").mkdir()
    ensure_replaceable(tmp_path / "empty", None, "x")


def test_atomic_path_never_writes_through_a_link_planted_under_its_own_name(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "compare.md").symlink_to(victim)
    (tmp_path / "out" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    for name in ("compare.md", "dangling.png"):
        with pytest.raises(UserError, match="is a link"):
            write_text(tmp_path / "out" / name, "theirs")
    assert victim.read_text() == "mine" and not (tmp_path / "nowhere.png").exists()


def test_a_link_in_a_folder_mtcli_wrote_makes_it_not_mtcli_s(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "compare.json").write_text("{}")
    (folder / "compare.md").symlink_to(tmp_path / "victim.txt")
    with pytest.raises(UserError, match="compare.md: is a link, which mtcli never makes"):
        ensure_replaceable(folder, {"compare.json", "compare.md"}, "a compare folder")


def test_a_log_is_never_appended_to_through_a_planted_link_or_into_a_fifo(tmp_path):
    from mtcli.core.fileio import open_append

    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (tmp_path / "metrics.jsonl").symlink_to(victim)
    with pytest.raises(UserError, match="metrics.jsonl: is a link"):
        open_append(tmp_path / "metrics.jsonl")
    os.mkfifo(tmp_path / "worker-1.log")
    with pytest.raises(UserError, match="worker-1.log: is not a regular file"):
        open_append(tmp_path / "worker-1.log")
    assert victim.read_text() == "mine\n"
    with open_append(tmp_path / "log.jsonl") as fh:
        fh.write("one\n")
    assert (tmp_path / "log.jsonl").read_text() == "one\n"


def test_own_file_refuses_links_and_special_files_and_leaves_missing_to_the_open(tmp_path):
    from mtcli.core.fileio import own_file

    (tmp_path / "recipe.toml").write_text("x = 1\n")
    assert own_file(tmp_path / "recipe.toml") == tmp_path / "recipe.toml"
    assert own_file(tmp_path / "missing.toml") == tmp_path / "missing.toml"
    (tmp_path / "linked.toml").symlink_to(tmp_path / "recipe.toml")   # even to a harmless file: mtcli makes none
    with pytest.raises(UserError, match="linked.toml: is a link, and mtcli makes none"):
        own_file(tmp_path / "linked.toml", "recipe file")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="is a FIFO"):
        own_file(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    with pytest.raises(UserError, match="folder: is a folder, not a graph"):
        own_file(tmp_path / "folder", "graph")
