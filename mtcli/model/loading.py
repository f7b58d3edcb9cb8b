"""Loading and saving minBERT weights in the HF layouts of BERT and MPNet.

An HF folder holds config.json and model.safetensors (or pytorch_model.bin);
keys may carry the family's prefix (`bert.`, `mpnet.`) and task heads (`cls.*`,
`lm_head.*`), which are ignored. Our module names are shorter than HF's; the tables
below are the one place that knows both layouts of each family.
"""

import re
from pathlib import Path

import torch

from mtcli.core.errors import UserError, cut
from mtcli.core.fileio import atomic_path, check_regular, write_json
from mtcli.model.config import BertConfig
from mtcli.core.paths import resolve_model_dir

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ENCODER_PREFIXES = ("embeddings.", "encoder.", "pooler.")

# (HF name, minBERT name) per family; {i} is the layer index, {p} weight or bias.
RENAMES = {
    "bert": [
        ("embeddings.word_embeddings.weight", "embeddings.word.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position.weight"),
        ("embeddings.token_type_embeddings.weight", "embeddings.token_type.weight"),
        ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
        ("encoder.layer.{i}.attention.self.query.{p}", "layers.{i}.attention.query.{p}"),
        ("encoder.layer.{i}.attention.self.key.{p}", "layers.{i}.attention.key.{p}"),
        ("encoder.layer.{i}.attention.self.value.{p}", "layers.{i}.attention.value.{p}"),
        ("encoder.layer.{i}.attention.output.dense.{p}", "layers.{i}.attention.out.{p}"),
        ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "layers.{i}.attention_norm.{p}"),
        ("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.ffn_in.{p}"),
        ("encoder.layer.{i}.output.dense.{p}", "layers.{i}.ffn_out.{p}"),
        ("encoder.layer.{i}.output.LayerNorm.{p}", "layers.{i}.ffn_norm.{p}"),
        ("pooler.dense.{p}", "pooler.{p}"),
    ],
    "mpnet": [
        ("embeddings.word_embeddings.weight", "embeddings.word.weight"),
        ("embeddings.position_embeddings.weight", "embeddings.position.weight"),
        ("embeddings.LayerNorm.{p}", "embeddings.norm.{p}"),
        ("encoder.layer.{i}.attention.attn.q.{p}", "layers.{i}.attention.query.{p}"),
        ("encoder.layer.{i}.attention.attn.k.{p}", "layers.{i}.attention.key.{p}"),
        ("encoder.layer.{i}.attention.attn.v.{p}", "layers.{i}.attention.value.{p}"),
        ("encoder.layer.{i}.attention.attn.o.{p}", "layers.{i}.attention.out.{p}"),
        ("encoder.layer.{i}.attention.LayerNorm.{p}", "layers.{i}.attention_norm.{p}"),
        ("encoder.layer.{i}.intermediate.dense.{p}", "layers.{i}.ffn_in.{p}"),
        ("encoder.layer.{i}.output.dense.{p}", "layers.{i}.ffn_out.{p}"),
        ("encoder.layer.{i}.output.LayerNorm.{p}", "layers.{i}.ffn_norm.{p}"),
        ("encoder.relative_attention_bias.weight", "relative_bias.table.weight"),
        ("pooler.dense.{p}", "pooler.{p}"),
    ],
}


def _pattern(template: str) -> re.Pattern:
    regex = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(regex + "$")


_HF_TO_OURS = {family: [(_pattern(hf), ours) for hf, ours in table] for family, table in RENAMES.items()}
_OURS_TO_HF = {family: [(_pattern(ours), hf) for hf, ours in table] for family, table in RENAMES.items()}


def _rename(name: str, table) -> str | None:
    for pattern, target in table:
        m = pattern.match(name)
        if m:
            return target.format(**m.groupdict())
    return None


def hf_to_minbert(hf_state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """HF state dict of config's family (any prefix) -> minBERT state dict (float32)."""
    prefix = config.family.weight_prefix
    if any(k.startswith(prefix) for k in hf_state):
        hf_state = {k[len(prefix):]: v for k, v in hf_state.items() if k.startswith(prefix)}
    # Old TF-converted checkpoints name LayerNorm parameters gamma/beta.
    hf_state = {re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", k)): v
                for k, v in hf_state.items()}
    table = _HF_TO_OURS[config.model_type]
    ours: dict[str, torch.Tensor] = {}
    for name, tensor in hf_state.items():
        if not name.startswith(ENCODER_PREFIXES):
            continue  # task heads, position_ids buffers, ...
        target = _rename(name, table)
        if target is not None:
            ours[target] = tensor.float()
    return ours


def minbert_to_hf(state: dict[str, torch.Tensor], config: BertConfig) -> dict[str, torch.Tensor]:
    """minBERT state dict -> config's family's HF layout (no prefix), contiguous tensors."""
    table = _OURS_TO_HF[config.model_type]
    hf: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        target = _rename(name, table)
        if target is None:
            raise ValueError(f"no HF {config.model_type} name for parameter {name}")
        hf[target] = tensor.contiguous()
    return hf


def read_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    for name in WEIGHT_FILES:
        path = model_dir / name
        check_regular(path, "weights file")
        if not path.is_file():
            continue
        try:
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                return load_file(str(path))
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # safetensors and torch.load raise several types on corrupt files
            raise UserError(f"{path}: cannot read weights ({type(e).__name__}: {cut(str(e), 160)}); the file is corrupt or not a checkpoint") from None
    raise UserError(f"{model_dir}: no {' or '.join(WEIGHT_FILES)}; expected an HF-layout encoder folder")


def load_pretrained(cls, path: str | Path | None, *, dropout: float | None = None):
    model_dir = resolve_model_dir(path)
    config = BertConfig.from_file(model_dir / "config.json")
    if dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    state = hf_to_minbert(read_weights(model_dir), config)
    model = cls(config, with_pooler="pooler.weight" in state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    if missing:
        raise UserError(f"{model_dir}: checkpoint lacks {len(missing)} encoder weights (first: {missing[0]}); is it a {config.model_type} model?")
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise UserError(f"{model_dir}: {name} has shape {tuple(tensor.shape)}, config.json implies {tuple(expected[name].shape)}")
    model.load_state_dict(state)
    return model


def save_pretrained(model, out_dir: str | Path) -> None:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", model.config.to_dict())
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(minbert_to_hf(model.state_dict(), model.config), str(tmp), metadata={"format": "pt"})
