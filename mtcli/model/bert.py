"""minBERT: the BERT encoder in plain PyTorch, readable top to bottom.

Embeddings (word + position + token type, LayerNorm, dropout), then N post-LN
encoder layers (multi-head self-attention through scaled_dot_product_attention,
then a GELU feed-forward), and an optional tanh pooler over [CLS]. Weights load
from any HF-layout BERT folder (see mtcli.model.loading).

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

from mtcli.model.config import BertConfig


def activation(name: str):
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    return F.relu


class Embeddings(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.word = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word(input_ids) + self.token_type(token_type_ids) + self.position(positions)
        return self.dropout(self.norm(x))


class SelfAttention(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        self.num_heads = config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.dropout_p = config.attention_probs_dropout_prob

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`mask` is (batch, 1, 1, length): boolean (True where a key may be attended) for
        scaled_dot_product_attention, or additive floats for the spelled-out form below."""
        batch, length, width = x.shape
        # (batch, length, width) -> (batch, heads, length, head_size); the head size is spelled out
        # (not -1) because onnxruntime's attention fusion reads it from the graph's Reshape
        heads = self.num_heads
        q, k, v = (p(x).view(batch, length, heads, width // heads).transpose(1, 2) for p in (self.query, self.key, self.value))
        if mask.dtype == torch.bool:
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
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config) for _ in range(config.num_hidden_layers))
        self.pooler = nn.Linear(config.hidden_size, config.hidden_size) if with_pooler else None
        self.spelled_out_attention = False  # export sets it: see SelfAttention.forward
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
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Last hidden states, (batch, length, hidden)."""
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        if self.spelled_out_attention:
            if self.training:
                raise RuntimeError("the spelled-out attention form is for export (eval mode) only")
            mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        else:
            mask = attention_mask.bool()[:, None, None, :]
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
        """Load an HF-layout BERT folder; None means the packaged all-MiniLM-L6-v2."""
        from mtcli.model.loading import load_pretrained

        return load_pretrained(cls, path, dropout=dropout)

    def save_pretrained(self, out_dir: str | Path) -> None:
        """Write config.json + model.safetensors in HF layout (loadable by from_pretrained)."""
        from mtcli.model.loading import save_pretrained

        save_pretrained(self, out_dir)

