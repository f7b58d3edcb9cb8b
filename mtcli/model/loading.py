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
ENCODER_CONFIG = "config.json"   # an HF encoder folder's sizes (mtcli.model.config.BertConfig)
ENCODER_PREFIXES = ("embeddings.", "encoder.", "pooler.")
# The largest encoder mtcli builds (8 GB of float32; BERT-large has 0.34e9): a config.json whose
# sizes are each within their bounds may still ask for terabytes together
MAX_PARAMETERS = 2_000_000_000

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


def hf_to_minbert(hf_state: dict[str, torch.Tensor], config: BertConfig,
                  source: str | Path = "model.safetensors") -> dict[str, torch.Tensor]:
    """HF state dict of config's family (any prefix) -> minBERT state dict (float32). A weight
    that is not floating point (an int8-quantized checkpoint: casting it gives a garbage model)
    is one UserError naming `source` and the weight."""
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
            if not tensor.dtype.is_floating_point:
                raise UserError(f"{source}: {cut(name, 120)} is {str(tensor.dtype).removeprefix('torch.')}, not "
                                f"floating point: mtcli loads float32, float16 or bfloat16 weights, not quantized "
                                f"ones; pass the unquantized model")
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


def weights_file(model_dir: Path) -> Path:
    """The folder's weights file: model.safetensors, else pytorch_model.bin (read with
    weights_only=True: plain tensors, nothing unpickled runs); one UserError if neither is there."""
    for name in WEIGHT_FILES:
        path = model_dir / name
        check_regular(path, "weights file")
        if path.is_file():
            return path
    raise UserError(f"{model_dir}: no {' or '.join(WEIGHT_FILES)}; expected an HF-layout encoder folder")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file `weights_file` chose."""
    try:
        if path.name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # safetensors and torch.load raise several types on corrupt files
        raise UserError(f"{path}: cannot read weights ({type(e).__name__}: {cut(str(e), 160)}); the file is corrupt "
                        f"or not a checkpoint") from None


def expected_shapes(cls, config: BertConfig, source: Path) -> dict[str, torch.Size]:
    """Every encoder weight `config` asks for, with its shape, found without allocating any (a
    model on torch's meta device); a configuration of more than MAX_PARAMETERS in all (sizes each
    within its bound, huge together) is one UserError before anything is built."""
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in cls(config, with_pooler=True).state_dict().items()}
    total = sum(shape.numel() for shape in shapes.values())
    if total > MAX_PARAMETERS:
        raise UserError(f"{source}: its sizes make an encoder of {total:,} parameters ({total * 4 / 2**30:,.0f} GiB), "
                        f"more than the {MAX_PARAMETERS:,} mtcli builds; not an encoder config.json")
    return shapes


def encoder_state(cls, model_dir: Path, config: BertConfig, extra: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """The folder's encoder weights in minBERT's names, each checked against `config` (the one
    `expected_shapes` gives) before a model is built: none missing, none more (a layer past
    num_hidden_layers), each of its shape and floating point; the pooler optional. `extra`:
    prefixes of other weights the file may hold and the caller reads (a checkpoint's heads.)."""
    shapes = expected_shapes(cls, config, model_dir / ENCODER_CONFIG)
    source = weights_file(model_dir)
    weights = read_weights(source)
    state = hf_to_minbert(weights, config, source)
    optional = {name for name in shapes if name.startswith("pooler.")}
    missing = sorted(set(shapes) - set(state) - optional)
    if missing:
        raise UserError(f"{model_dir}: checkpoint lacks {len(missing)} encoder weights (first: {missing[0]}); is it a "
                        f"{config.model_type} model?")
    unexpected = sorted(set(state) - set(shapes))
    if unexpected:
        raise UserError(f"{source}: holds {len(unexpected)} encoder weight(s) config.json has no place for (first: "
                        f"{cut(unexpected[0], 80)}: {config.num_hidden_layers} layers of {config.hidden_size}); weights "
                        f"and config.json are not one model")
    for name, tensor in state.items():
        if tensor.shape != shapes[name]:
            raise UserError(f"{model_dir}: {name} has shape {tuple(tensor.shape)}, config.json implies "
                            f"{tuple(shapes[name])}")
    if optional & set(state) and optional - set(state):
        raise UserError(f"{source}: holds part of the pooler ({', '.join(sorted(optional & set(state)))}), not all of "
                        f"it; weights file damaged")
    return {**state, **{k: v for k, v in weights.items() if k.startswith(extra)}} if extra else state


def load_pretrained(cls, path: str | Path | None, *, dropout: float | None = None):
    model_dir = resolve_model_dir(path)
    config = BertConfig.from_file(model_dir / ENCODER_CONFIG)
    if dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    state = encoder_state(cls, model_dir, config)
    model = cls(config, with_pooler="pooler.weight" in state)
    model.load_state_dict(state)
    return model


def save_pretrained(model, out_dir: str | Path) -> None:
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "config.json", model.config.to_dict())
    with atomic_path(out_dir / "model.safetensors") as tmp:
        save_file(minbert_to_hf(model.state_dict(), model.config), str(tmp), metadata={"format": "pt"})
