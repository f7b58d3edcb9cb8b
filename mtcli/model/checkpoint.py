"""mtcli checkpoints: a folder any BERT (or MPNet) loader can read, plus the heads.

    config.json        the encoder's HF config (BERT or MPNet)
    model.safetensors  encoder weights in HF layout + `heads.<task>.*`
    tokenizer.json     the WordPiece tokenizer
    mtcli.json         head config, task definitions, training provenance

`MinBert.from_pretrained(ckpt)` loads the fine-tuned encoder alone (the head keys are
ignored), so a checkpoint also serves as a `--model-dir` backbone.
"""

import hashlib
from pathlib import Path

import torch

from mtcli.core.version import __version__
from mtcli.core.errors import UserError, cut
from mtcli.core.fileio import atomic_path, own_file, read_json_dict, read_json_object, staged_dir, write_json
from mtcli.model.bert import MinBert
from mtcli.model.config import BertConfig
from mtcli.model.loading import encoder_state, minbert_to_hf
from mtcli.model.multitask import HeadConfig, MultitaskModel
from mtcli.core.data import locate_data
from mtcli.core.tasks import SPLITS, Task, tasks_from_dicts
from mtcli.core.typed import typed_values
from mtcli.core.tokenizer import Tokenizer

TRAINER_STATE = "trainer_state.pt"
META = "mtcli.json"
FORMAT = "mtcli-checkpoint"
# An HF / sentence-transformers folder `mtcli export --format hf` wrote: the encoder alone in
# model.safetensors, the heads beside it, their declaration in HF_META (mtcli.export.hf)
HF_META = "mtcli-heads.json"
HF_FORMAT = "mtcli-hf"
HF_HEADS = "heads.safetensors"
FORMAT_VERSION = 2  # 2: tasks are declared data (mtcli.json stores their declarations)
FILES = {"config.json", "model.safetensors", "tokenizer.json", META, TRAINER_STATE}


def checkpoint_files(folder: Path) -> set[str] | None:
    """The files mtcli writes into a checkpoint folder, if `folder` is one (for `staged_dir`)."""
    meta = read_json_dict(folder / META)
    return FILES if meta is not None and meta.get("format") == FORMAT else None


def save_checkpoint(model: MultitaskModel, tokenizer: Tokenizer, out_dir: str | Path, *, info: dict | None = None,
                    trainer_state: dict | None = None) -> Path:
    """Write the checkpoint into a staging folder, then swap it in: never half-written.

    `trainer_state` (optimizer, scheduler, RNG, position) goes along in trainer_state.pt,
    inside the same swap, so weights and training state always match."""
    from safetensors.torch import save_file

    with staged_dir(out_dir, checkpoint_files, "an mtcli checkpoint") as staging:
        state = model.state_dict()
        encoder = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        heads = {k: v.contiguous() for k, v in state.items() if k.startswith("heads.")}
        write_json(staging / "config.json", model.encoder.config.to_dict())
        with atomic_path(staging / "model.safetensors") as tmp:
            save_file({**minbert_to_hf(encoder, model.encoder.config), **heads}, str(tmp), metadata={"format": "pt"})
        tokenizer.save(staging)
        if trainer_state is not None:
            with atomic_path(staging / TRAINER_STATE) as tmp:
                torch.save(trainer_state, tmp)
        write_json(staging / META, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "mtcli_version": __version__,
            "heads": model.head_config.to_dict(), "tasks": [t.declaration() for t in model.tasks.values()],
            **(info or {}),
        })
    return Path(out_dir)


def model_files(ckpt_dir: Path) -> list[Path]:
    """The files of an mtcli model folder (a checkpoint, or an HF folder `mtcli export --format hf`
    wrote) that loading it reads, each checked as a file of mtcli's (`own_file`: no link, no
    special file) before any is opened."""
    names = ["config.json", "model.safetensors", "tokenizer.json", META, HF_META, HF_HEADS]
    return [own_file(ckpt_dir / name, "checkpoint file") for name in names]


def model_state_from(ckpt_dir: str | Path) -> dict[str, torch.Tensor]:
    """The MultitaskModel state dict stored in a checkpoint folder, its encoder checked against
    config.json (mtcli.model.loading.encoder_state); its files were checked by read_meta, which
    every caller reads first."""
    ckpt_dir = Path(ckpt_dir)
    config = BertConfig.from_file(ckpt_dir / "config.json")
    state = encoder_state(MinBert, ckpt_dir, config, extra=("heads.",))
    state = {(k if k.startswith("heads.") else f"encoder.{k}"): v for k, v in state.items()}
    heads = ckpt_dir / HF_HEADS
    if heads.is_file():   # an HF folder: the heads beside the encoder
        from safetensors.torch import load_file

        try:
            weights = load_file(str(heads))
        except Exception as e:  # safetensors raises several types on corrupt files
            raise UserError(f"{heads}: cannot read the heads ({type(e).__name__}: {e}); export the folder again") from None
        state.update({k: v for k, v in weights.items() if k.startswith("heads.")})
    return state


def check_heads(ckpt_dir: Path, model: MultitaskModel, state: dict[str, torch.Tensor]) -> None:
    """The heads' weights fit the heads the checkpoint declares (each named, with its file), and
    every weight is a finite number: a model of NaNs is refused, never exported or scored."""
    source = ckpt_dir / (HF_HEADS if (ckpt_dir / HF_HEADS).is_file() else "model.safetensors")
    wanted = {k: v.shape for k, v in model.state_dict().items() if k.startswith("heads.")}
    found = {k: v for k, v in state.items() if k.startswith("heads.")}
    for name in sorted(set(wanted) - set(found)):
        raise UserError(f"{source}: no tensor {name}, which the declared task heads need; the checkpoint is damaged")
    for name in sorted(set(found) - set(wanted)):
        raise UserError(f"{source}: tensor {cut(name, 80)} belongs to no declared task head; the checkpoint is damaged")
    for name, shape in wanted.items():
        if not found[name].is_floating_point():
            raise UserError(f"{source}: tensor {name} is {str(found[name].dtype).removeprefix('torch.')}, not floating "
                            f"point; the checkpoint is damaged")
        if found[name].shape != shape:
            raise UserError(f"{source}: tensor {name} has shape {tuple(found[name].shape)}, its head needs "
                            f"{tuple(shape)}; the checkpoint is damaged")
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            shown = source if name.startswith("heads.") else ckpt_dir / "model.safetensors"
            raise UserError(f"{shown}: tensor {cut(name, 80)} holds NaN or infinite values: the model diverged or "
                            f"the file is damaged; use an earlier checkpoint")


def read_meta(ckpt_dir: str | Path) -> dict:
    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / META
    if not ckpt_dir.is_dir():
        raise UserError(f"{ckpt_dir}: checkpoint folder not found; pass --checkpoint runs/<name>/best")
    model_files(ckpt_dir)
    if not path.is_file() and (ckpt_dir / HF_META).is_file():   # `mtcli export --format hf`: its heads' declaration
        hf = read_json_dict(ckpt_dir / HF_META)
        if hf is None or hf.get("format") != HF_FORMAT:
            raise UserError(f"{ckpt_dir / HF_META}: not what `mtcli export --format hf` writes; export the folder again")
        return {"heads": hf.get("heads"), "tasks": hf.get("tasks")}
    if not path.is_file():
        raise UserError(f"{ckpt_dir}: not an mtcli checkpoint (no mtcli.json); pass the best/ or last/ folder of a run")
    meta = read_json_object(path, "checkpoint record", "retrain or pick another checkpoint")
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: checkpoint format {meta.get('format')} v{meta.get('format_version')} "
                        f"is not {FORMAT} v{FORMAT_VERSION}; re-train with this mtcli version")
    return meta


def meta_path(ckpt_dir: str | Path) -> Path:
    """The file that declares a model folder's heads and tasks: a checkpoint's mtcli.json, or the
    mtcli-heads.json of an HF folder `mtcli export --format hf` wrote (what errors name)."""
    ckpt_dir = Path(ckpt_dir)
    return ckpt_dir / HF_META if not (ckpt_dir / META).is_file() and (ckpt_dir / HF_META).is_file() else ckpt_dir / META


def checkpoint_tasks(ckpt_dir: str | Path, meta: dict | None = None) -> dict[str, Task]:
    """The tasks a checkpoint was trained on, as it declared them."""
    meta = meta if meta is not None else read_meta(ckpt_dir)
    return tasks_from_dicts(meta.get("tasks"), meta_path(ckpt_dir))


def checkpoint_data(ckpt_dir: str | Path, tasks: dict[str, Task], *, task_file=None, data_dir=None,
                    splits=SPLITS) -> dict[str, Task]:
    """A checkpoint's tasks with their data located (mtcli.core.data.locate_data): the run that
    holds the checkpoint, if any, vouches for the files it read."""
    from mtcli.run.folder import enclosing_run_dir
    from mtcli.run.provenance import read_record, recorded_files

    run = enclosing_run_dir(ckpt_dir)
    record = read_record(run) if run is not None else None
    recorded = (lambda name: recorded_files(record, name, splits)) if record is not None else None
    return locate_data(tasks, ckpt_dir, task_file=task_file, data_dir=data_dir, recorded=recorded)


def load_checkpoint(ckpt_dir: str | Path, *, device: str | torch.device = "cpu") -> tuple[MultitaskModel, Tokenizer, dict]:
    ckpt_dir = Path(ckpt_dir)
    meta = read_meta(ckpt_dir)
    heads = HeadConfig(**typed_values(HeadConfig, meta.get("heads"), f"{meta_path(ckpt_dir)}: heads"))
    config = BertConfig.from_file(ckpt_dir / "config.json")
    if not 2 <= heads.max_length <= config.max_tokens:
        raise UserError(f"{meta_path(ckpt_dir)}: heads: max_length {heads.max_length} is not between 2 and the encoder's "
                        f"{config.max_tokens} positions; the checkpoint is damaged")
    state = model_state_from(ckpt_dir)
    model = MultitaskModel(MinBert(config, with_pooler="encoder.pooler.weight" in state), heads,
                           checkpoint_tasks(ckpt_dir, meta))
    check_heads(ckpt_dir, model, state)
    model.load_state_dict(state)
    tokenizer = Tokenizer.from_dir(ckpt_dir, max_length=heads.max_length)
    tokenizer.check_vocabulary(config.vocab_size, ckpt_dir / "config.json")
    return model.to(device).eval(), tokenizer, meta


def checkpoint_hash(ckpt_dir: str | Path) -> str:
    """sha256 of the weight file, to tie exports and evals to the exact checkpoint."""
    digest = hashlib.sha256()
    with open(Path(ckpt_dir) / "model.safetensors", "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def latest_checkpoint(runs_dir: str | Path = "runs", which: str = "best") -> Path:
    """The `which` checkpoint of the most recently written run."""
    runs_dir = Path(runs_dir)
    candidates = [p / which for p in runs_dir.glob("*") if (p / which / "mtcli.json").is_file()]
    if not candidates:
        raise UserError(f"no checkpoint found under {runs_dir}/*/{which}; run `mtcli train` first or pass --checkpoint")
    return max(candidates, key=lambda p: (p / "mtcli.json").stat().st_mtime)
