"""A trained model as the ecosystem shares encoders: an HF / sentence-transformers folder.

    config.json, model.safetensors   the fine-tuned encoder in its family's HF layout (BERT or
                                     MPNet: the loader's name table used in reverse)
    tokenizer.json, tokenizer_config.json, special_tokens_map.json
    modules.json, 1_Pooling/config.json, sentence_bert_config.json
                                     what SentenceTransformer(folder) reads: the run's pooling
    heads.safetensors, mtcli-heads.json
                                     the task heads beside it, and each task's declaration
    README.md                        a model card: HF front matter (model-index with the dev
                                     metrics), the recipe, the data's sha256, how to reproduce

`SentenceTransformer(folder)` and `AutoModel.from_pretrained(folder)` load it with no code of
ours; `mtcli train --model-dir folder` fine-tunes it further, and `mtcli export --checkpoint
folder` makes ONNX graphs of it (mtcli.model.checkpoint reads the heads beside the encoder). Everything written is plain
tensors and JSON: nothing pickled. The folder is replaced as a whole, and only if mtcli wrote it.
"""

from pathlib import Path

from mtcli.core.errors import UserError
from mtcli.core.fileio import atomic_path, read_json_dict, staged_dir, write_json, write_text
from mtcli.core.version import __version__
from mtcli.export.card import model_card
from mtcli.model.checkpoint import HF_FORMAT as FORMAT, HF_HEADS, HF_META as HEADS_META

FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "modules.json", "1_Pooling", "sentence_bert_config.json", HF_HEADS, HEADS_META, "README.md"}
USAGE = ["```python", "from sentence_transformers import SentenceTransformer",
         "model = SentenceTransformer('path/to/this/folder')", "embeddings = model.encode(['A dog runs.'])", "```",
         "", "`mtcli train --model-dir path/to/this/folder` fine-tunes it further; `mtcli export --checkpoint "
         "path/to/this/folder` makes ONNX graphs of it, heads included: `heads.safetensors` holds each task's head "
         "and `mtcli-heads.json` each task's declaration (sentence-transformers and transformers read the "
         "encoder alone)."]


def hf_files(folder: Path) -> set[str] | None:
    """The entries an earlier `mtcli export --format hf` wrote into `folder`, if it is one."""
    meta = read_json_dict(folder / HEADS_META)
    return FILES if meta is not None and meta.get("format") == FORMAT else None


def export_hf(checkpoint: str | Path, out_dir: str | Path, *, say=lambda line: None) -> Path:
    from safetensors.torch import save_file

    from mtcli.export.onnx import check_out_dir
    from mtcli.model.checkpoint import load_checkpoint
    from mtcli.model.loading import minbert_to_hf

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    check_out_dir(out_dir, checkpoint)
    model, tokenizer, meta = load_checkpoint(checkpoint)
    card = model_card(checkpoint, model, meta, USAGE)   # its refusals (a damaged run file) before anything is written
    config = model.encoder.config
    with staged_dir(out_dir, hf_files, "an earlier `mtcli export --format hf`") as staging:
        write_json(staging / "config.json", config.to_dict())
        with atomic_path(staging / "model.safetensors") as tmp:   # minbert_to_hf makes each tensor contiguous
            save_file(minbert_to_hf(model.encoder.state_dict(), config), str(tmp), metadata={"format": "pt"})
        tokenizer.save(staging)
        specials = {k: v for k, v in config.family.special_tokens.items() if tokenizer.backend.token_to_id(v) is not None}
        write_json(staging / "special_tokens_map.json", specials)
        write_json(staging / "tokenizer_config.json", {"tokenizer_class": config.family.tokenizer_class,
                                                       "model_max_length": tokenizer.max_length, **specials})
        pooling = model.head_config.pooling
        write_json(staging / "modules.json", [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}])
        write_json(staging / "sentence_bert_config.json", {"max_seq_length": tokenizer.max_length, "do_lower_case": False})
        (staging / "1_Pooling").mkdir()
        write_json(staging / "1_Pooling" / "config.json", {
            "word_embedding_dimension": config.hidden_size, "pooling_mode_cls_token": pooling == "cls",
            "pooling_mode_mean_tokens": pooling == "mean", "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False})
        heads = {name: tensor.contiguous() for name, tensor in model.state_dict().items() if name.startswith("heads.")}
        with atomic_path(staging / HF_HEADS) as tmp:
            save_file(heads, str(tmp), metadata={"format": "pt"})
        write_json(staging / HEADS_META, {"format": FORMAT, "mtcli_version": __version__,
                                          "heads": model.head_config.to_dict(),
                                          "tasks": [t.declaration() for t in model.tasks.values()]})
        write_text(staging / "README.md", card)
    say(f"wrote {out_dir}/: the {config.model_type} encoder in HF layout, sentence-transformers modules "
        f"({pooling} pooling), heads.safetensors, README.md")
    return out_dir


def check_format(value: str) -> str:
    if value not in ("onnx", "hf"):
        raise UserError(f"--format {value!r}: expected onnx (graphs for mtcli score) or hf (an HF / "
                        "sentence-transformers folder)")
    return value
