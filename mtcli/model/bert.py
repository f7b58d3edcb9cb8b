"""minBERT: the BERT encoder in plain PyTorch, readable top to bottom, and its MPNet sibling.

Embeddings (word + position + token type, LayerNorm, dropout), then N post-LN
encoder layers (multi-head self-attention through scaled_dot_product_attention,
then a GELU feed-forward), and an optional tanh pooler over [CLS]. Weights load
from any HF-layout BERT or MPNet folder (see mtcli.model.loading).

MPNet (config.model_type "mpnet", the facts in mtcli.model.config.FAMILIES) is the same
network with three differences, each in one place below: positions count from
pad_token_id + 1 (Embeddings), there are no token types (Embeddings), and one relative
position bias, a (buckets x heads) table looked up by the bucket of each key's distance
from the query, is added to every layer's attention scores (RelativePositionBias, added
where MinBert.forward builds the attention mask).

`recompute_activations` (training's --activation-checkpointing) keeps only each layer's input
for the backward pass and runs the layer again there (torch.utils.checkpoint, the same dropout
masks): the same gradients for about a third more forward compute, and a fraction of the memory
(what SimCSE's two views of a large batch need).
"""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mtcli.model.config import RELATIVE_MAX_DISTANCE, BertConfig
from mtcli.model.vml import settle_vml_dispatch


def activation(name: str):
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.relu


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        family = config.family
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size) if family.token_types else None
        # MPNet (like RoBERTa): a sequence's tokens take positions pad_token_id + 1, + 2, ...
        self.padding_position = config.pad_token_id if family.positions_after_padding else None
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        if self.padding_position is None:
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        else:  # tokens count 1, 2, ... from the padding position; padding itself sits there
            mask = attention_mask.to(torch.int64)
            positions = torch.cumsum(mask, dim=1) * mask + self.padding_position
        x = self.word(input_ids)
        if self.token_type is not None:
            x = x + self.token_type(token_type_ids)
        x = x + self.position(positions)   # (this order keeps BERT's exported graph as onnxruntime fuses it)
        return self.dropout(self.norm(x))


class RelativePositionBias(nn.Module):
    """MPNet's attention bias: bias[h, i, j] = table[bucket(j - i), h], the same for every layer.

    Buckets as transformers' MPNet makes them: half for keys before the query, half after;
    within each half, distances below a quarter of the buckets get one bucket each, longer
    ones share log-spaced buckets up to RELATIVE_MAX_DISTANCE, and everything further the
    last. The bucket of every distance the position table allows is computed once (a buffer,
    not a weight), so a traced graph looks buckets up instead of recomputing logarithms."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.table = nn.Embedding(config.relative_attention_num_buckets, config.num_attention_heads)
        self.longest = config.max_position_embeddings
        distances = torch.arange(-self.longest + 1, self.longest)   # key position - query position
        self.register_buffer("buckets", relative_position_bucket(distances, config.relative_attention_num_buckets),
                             persistent=False)

    def forward(self, length: int, device) -> torch.Tensor:
        """(1, heads, length, length) float bias for a sequence of `length` tokens."""
        positions = torch.arange(length, device=device)
        distance = positions[None, :] - positions[:, None]           # [query, key]: key - query
        bias = self.table(self.buckets[distance + self.longest - 1])  # (length, length, heads)
        return bias.permute(2, 0, 1).unsqueeze(0)


def relative_position_bucket(distance: torch.Tensor, num_buckets: int) -> torch.Tensor:
    """The bucket of each (key - query) distance, MPNet's and T5's bidirectional scheme."""
    half = num_buckets // 2
    bucket = (distance > 0).to(torch.long) * half       # keys after the query use the upper half
    distance = distance.abs()
    exact = half // 2
    # transformers' expression, op for op (float32), so the truncation lands where it lands there
    scaled = torch.log(distance.clamp(min=1).float() / exact) / math.log(RELATIVE_MAX_DISTANCE / exact) * (half - exact)
    far = torch.clamp(exact + scaled.to(torch.long), max=half - 1)
    return bucket + torch.where(distance < exact, distance, far)


class ExportedMultiHeadAttention(torch.autograd.Function):
    """Export only: one node of onnxruntime's com.microsoft MultiHeadAttention per layer, the fused
    attention onnxruntime's BERT optimizer cannot make of MPNet's (its relative position bias has
    no place in the fusion pattern). The node takes the query, key and value projections without
    their biases, the three biases, the key padding mask (batch, length) and the relative bias
    (1, heads, length, length) as its attention_bias: computed once per batch, shared by every
    layer. In torch (the trace, tests) the same math as the spelled-out attention."""

    @staticmethod
    def forward(ctx, q, k, v, bias, key_mask, attention_bias, heads: int):
        batch, length, width = q.shape
        split = lambda t: t.view(batch, length, heads, width // heads).transpose(1, 2)  # noqa: E731
        bq, bk, bv = bias.split(width)
        scores = split(q + bq) @ split(k + bk).transpose(-1, -2) / math.sqrt(width // heads)
        scores = scores + attention_bias + (1.0 - key_mask[:, None, None, :].to(q.dtype)) * -10000.0
        return (torch.softmax(scores, dim=-1) @ split(v + bv)).transpose(1, 2).reshape(batch, length, width)

    @staticmethod
    def symbolic(g, q, k, v, bias, key_mask, attention_bias, heads: int):
        out = g.op("com.microsoft::MultiHeadAttention", q, k, v, bias, key_mask, attention_bias, num_heads_i=heads)
        out.setType(q.type())
        return out


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob
        self.spelled_out = False  # MinBert.spelled_out_attention sets it on every layer (export)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`mask` is (batch, 1, 1, length): boolean (True where a key may be attended) for
        scaled_dot_product_attention, or additive floats: the spelled-out form below, or
        (batch, heads, length, length) with MPNet's relative position bias in it; or, exporting
        MPNet, the pair (key padding mask, relative bias) of ExportedMultiHeadAttention."""
        batch, length, width = x.shape
        if isinstance(mask, tuple):   # export of MPNet: (key padding mask, relative bias), see ExportedMultiHeadAttention
            projections = (F.linear(x, p.weight) for p in (self.query, self.key, self.value))
            bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
            return self.out(ExportedMultiHeadAttention.apply(*projections, bias, *mask, self.num_heads))
        # (batch, length, width) -> (batch, heads, length, head_size); the head size is spelled out
        # (not -1) because onnxruntime's attention fusion reads it from the graph's Reshape
        heads = self.num_heads
        q, k, v = (p(x).view(batch, length, heads, width // heads).transpose(1, 2) for p in (self.query, self.key, self.value))
        if not self.spelled_out:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout_p if self.training else 0.0)
        else:  # inference only: the matmul-softmax-matmul that onnxruntime fuses into one Attention op
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
            y = torch.matmul(torch.softmax(scores + mask, dim=-1), v)
        return self.out(y.transpose(1, 2).reshape(batch, length, width))


class EncoderLayer(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.ffn_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = activation(config.hidden_act)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_norm(x + self.dropout(self.attention(x, mask)))
        return self.ffn_norm(x + self.dropout(self.ffn_out(self.act(self.ffn_in(x)))))


class MinBert(nn.Module):
    def __init__(self, config: BertConfig, *, with_pooler: bool = False):
        super().__init__()
        settle_vml_dispatch()   # before any op runs on several threads: see mtcli/model/vml.py
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.relative_bias = RelativePositionBias(config) if config.family.relative_attention_bias else None
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if with_pooler else None
        self.spelled_out_attention = False  # export sets it: see SelfAttention.forward
        # the spelled-out MPNet attention as one MultiHeadAttention node (ExportedMultiHeadAttention); off: the
        # matmul-softmax-matmul nodes onnxruntime leaves unfused (bench/scoring_profile.py compares the two)
        self.multi_head_attention_node = True
        self.recompute_activations = False  # training sets it: see the module's docstring
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation, for randomly configured models (tests, ablations)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear):
            nn.init.zeros_(module.bias)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            nn.init.zeros_(module.weight[module.padding_idx])

    @property
    def spelled_out_attention(self) -> bool:
        """Export sets it: every layer's attention in the form onnxruntime fuses (eval only)."""
        return self._spelled_out_attention

    @spelled_out_attention.setter
    def spelled_out_attention(self, value: bool) -> None:
        self._spelled_out_attention = bool(value)
        for layer in self.layers:
            layer.attention.spelled_out = self._spelled_out_attention

    @property
    def custom_opsets(self) -> dict[str, int]:
        """The ONNX operator domains an export of this encoder uses besides the standard one."""
        return {"com.microsoft": 1} if self.relative_bias is not None and self.multi_head_attention_node else {}

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states, (batch, length, hidden)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, attention_mask, token_type_ids)
        keys = attention_mask[:, None, None, :]   # (batch, 1, 1, length): which keys a query may attend
        if self.spelled_out_attention and self.training:
            raise RuntimeError("the spelled-out attention form is for export (eval mode) only")
        if self.spelled_out_attention and self.relative_bias is not None and self.multi_head_attention_node:
            mask = (attention_mask.to(torch.int32), self.relative_bias(input_ids.shape[1], input_ids.device))
        elif self.spelled_out_attention:
            mask = (1.0 - keys.to(x.dtype)) * -10000.0
        elif self.relative_bias is None:
            mask = keys.bool()
        else:  # an additive float mask carries the bias to scaled_dot_product_attention
            mask = torch.zeros(keys.shape, dtype=x.dtype, device=x.device).masked_fill(~keys.bool(), float("-inf"))
        if self.relative_bias is not None and not isinstance(mask, tuple):
            mask = mask + self.relative_bias(input_ids.shape[1], input_ids.device).to(mask.dtype)
        recompute = self.recompute_activations and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            x = checkpoint(layer, x, mask, use_reentrant=False) if recompute else layer(x, mask)
        return x

    def pool(self, hidden: torch.Tensor) -> torch.Tensor:
        """BERT's pooler: tanh(W h_[CLS] + b). Needs a checkpoint with pooler weights."""
        if self.pooler is None:
            raise RuntimeError("this MinBert has no pooler (its checkpoint had no pooler weights)")
        return torch.tanh(self.pooler(hidden[:, 0]))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, *, dropout: float | None = None) -> "MinBert":
        """Load an HF-layout BERT or MPNet folder (or an installed backbone's name, see
        mtcli.core.backbones); None means the packaged all-MiniLM-L6-v2."""
        from mtcli.model.loading import load_pretrained

        return load_pretrained(cls, path, dropout=dropout)

    def save_pretrained(self, out_dir: str | Path) -> None:
        """Write config.json + model.safetensors in HF layout (loadable by from_pretrained)."""
        from mtcli.model.loading import save_pretrained

        save_pretrained(self, out_dir)

