"""export/manifest.json: what an exported model folder holds. Torch-free (scoring reads it).

The manifest is the scoring side's single source for the tasks: files, input names,
encodings, output names, label names and max length all come from here, and were
written from the same task registry and head config that training used.
"""

import json
from pathlib import Path

from mtcli import __version__
from mtcli.errors import UserError

MANIFEST = "manifest.json"
FORMAT = "mtcli-onnx"
FORMAT_VERSION = 1


def output_name(task_kind: str) -> str:
    return {"multiclass": "probabilities", "binary": "probability", "regression": "score"}[task_kind]


def read_manifest(model_dir: str | Path) -> dict:
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST
    if not model_dir.is_dir():
        raise UserError(f"{model_dir}: exported model folder not found; run `mtcli export` first or pass --model")
    if not path.is_file():
        raise UserError(f"{path}: not found; {model_dir} is not an `mtcli export` folder (run `mtcli export`)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: corrupt manifest ({e}); re-run `mtcli export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not an mtcli ONNX manifest; re-run `mtcli export`")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: manifest format v{manifest.get('format_version')} was written by mtcli "
                        f"{manifest.get('versions', {}).get('mtcli', '?')}; this mtcli {__version__} reads "
                        f"v{FORMAT_VERSION}: re-run `mtcli export` with this version")
    return manifest
