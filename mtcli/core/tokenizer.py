"""WordPiece tokenization through the `tokenizers` library, and the one definition
of how a single sentence or a pair becomes model input. Torch-free (numpy out).

Pairs are `[CLS] a [SEP] b [SEP]` with token type ids 0 for a and 1 for b;
sequences are truncated longest-first to MAX_LENGTH and padded to the longest
row of the batch.
"""

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtcli.core.errors import UserError

MAX_LENGTH = 128
TOKENIZER_FILE = "tokenizer.json"


class Tokenizer:
    def __init__(self, backend, max_length: int = MAX_LENGTH):
        self.backend = backend
        self.max_length = max_length
        self.pad_id = backend.token_to_id("[PAD]")
        if self.pad_id is None:
            raise UserError("tokenizer has no [PAD] token; expected a BERT WordPiece vocabulary")
        backend.no_padding()
        backend.enable_truncation(max_length=max_length, strategy="longest_first")

    @classmethod
    def from_dir(cls, model_dir: str | Path, max_length: int = MAX_LENGTH) -> "Tokenizer":
        """Load tokenizer.json, or build a BERT WordPiece tokenizer from vocab.txt."""
        from tokenizers import Tokenizer as HFTokenizer

        model_dir = Path(model_dir)
        if (model_dir / TOKENIZER_FILE).is_file():
            try:
                return cls(HFTokenizer.from_file(str(model_dir / TOKENIZER_FILE)), max_length)
            except Exception as e:  # the tokenizers library raises plain Exceptions on bad files
                raise UserError(f"{model_dir / TOKENIZER_FILE}: cannot be read as a tokenizer ({e})") from None
        if (model_dir / "vocab.txt").is_file():
            return cls(_wordpiece_from_vocab(model_dir), max_length)
        raise UserError(f"{model_dir}: no tokenizer.json or vocab.txt; expected an HF-layout BERT folder")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Batch-encode sentences (or sentence pairs) into padded int64 arrays."""
        if pairs is None:
            encodings = self.backend.encode_batch(list(texts))
        else:
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} first sentences but {len(pairs)} second sentences")
            encodings = self.backend.encode_batch(list(zip(texts, pairs)))
        width = max((len(e.ids) for e in encodings), default=0)
        batch = {
            "input_ids": np.full((len(encodings), width), self.pad_id, dtype=np.int64),
            "attention_mask": np.zeros((len(encodings), width), dtype=np.int64),
            "token_type_ids": np.zeros((len(encodings), width), dtype=np.int64),
        }
        for row, e in enumerate(encodings):
            n = len(e.ids)
            batch["input_ids"][row, :n] = e.ids
            batch["attention_mask"][row, :n] = 1
            batch["token_type_ids"][row, :n] = e.type_ids
        return batch

    def lengths(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """Tokens per sentence (or pair), after truncation, without padding."""
        inputs = list(texts) if pairs is None else list(zip(texts, pairs))
        return np.array([len(e.ids) for e in self.backend.encode_batch(inputs)], dtype=np.int64)

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / TOKENIZER_FILE
        self.backend.save(str(path))
        return path


def _wordpiece_from_vocab(model_dir: Path):
    """A BERT tokenizer for checkpoints that ship vocab.txt only."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    settings = {}
    if (model_dir / "tokenizer_config.json").is_file():
        settings = json.loads((model_dir / "tokenizer_config.json").read_text())
    lowercase = settings.get("do_lower_case", True)
    vocab = {}
    with open(model_dir / "vocab.txt", encoding="utf-8") as fh:
        for index, token in enumerate(fh):
            vocab[token.rstrip("\n")] = index
    for special in ("[UNK]", "[CLS]", "[SEP]", "[PAD]"):
        if special not in vocab:
            raise UserError(f"{model_dir / 'vocab.txt'}: no {special} token; expected a BERT WordPiece vocabulary")
    tok = HFTokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=settings.get("strip_accents"), lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = vocab["[CLS]"], vocab["[SEP]"]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A:0 [SEP]:0",
        pair="[CLS] $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok
