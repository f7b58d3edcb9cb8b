"""WordPiece tokenization through the `tokenizers` library, and the one definition
of how a single sentence or a pair becomes model input. Torch-free (numpy out).

The special tokens around a sentence or a pair are the tokenizer.json's own post-processor's:
for BERT, pairs are `[CLS] a [SEP] b [SEP]` with token type ids 0 for a and 1 for b (MPNet's:
`<s> a </s></s> b </s>`, type ids all 0);
sequences are truncated longest-first to MAX_LENGTH and padded to the longest
row of the batch.

A text far longer than MAX_LENGTH tokens is cut to a prefix of whole words before it
is tokenized (`clip`): one that still gives at least MAX_LENGTH tokens, so the truncated
result is the one the whole text gives, while the memory the tokenizer takes stays
bounded whatever the length of the line (a 5 MB line no longer costs a gigabyte).
"""

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mtcli.core.errors import UserError, cut
from mtcli.core.fileio import check_regular, read_json_dict

MAX_LENGTH = 128
TOKENIZER_FILE = "tokenizer.json"
CLIP_CHARS_PER_TOKEN = 16   # the first prefix tried for a long text: max_length x this many characters


class Tokenizer:
    def __init__(self, backend, max_length: int = MAX_LENGTH):
        self.backend = backend
        self.max_length = max_length
        self.pad_id = pad_id(backend)
        backend.no_padding()
        backend.enable_truncation(max_length=max_length, strategy="longest_first")
        self._counter = None  # an untruncated copy of the backend, to count the tokens of long texts
        self.id_limit: int | None = None   # the encoder's vocab_size, once check_vocabulary knows it
        self._source: Path | None = None

    def check_vocabulary(self, vocab_size: int, source: str | Path) -> None:
        """Every token this tokenizer gives is a row of the encoder's embedding table of
        `vocab_size` (`source`: the file that says so): the vocabulary's ids now, and each batch
        encode makes (a post-processor may add ids of its own). A tokenizer of another model is
        one UserError, never an IndexError in the embedding lookup."""
        ids = self.backend.get_vocab(with_added_tokens=True).values()
        highest = max(ids, default=-1)
        if highest >= vocab_size:
            raise UserError(f"{source}: vocab_size is {vocab_size:,}, but the tokenizer has token id {highest:,}: "
                            f"tokenizer and encoder are not one model")
        self.id_limit, self._source = vocab_size, Path(source)

    def seen_as(self, texts: Sequence[str]) -> list[tuple[int, ...]]:
        """Each text as the model reads it: its token ids after the tokenizer's normalisation (case
        and accents for an uncased vocabulary, spacing always), cut to max_length, without
        special tokens. Two texts with one key are one input to the model ("A  DOG." and "a
        dog." for an uncased BERT)."""
        encodings = self.backend.encode_batch([self.clip(t) for t in texts], add_special_tokens=False)
        return [tuple(e.ids) for e in encodings]

    def _check_ids(self, ids: np.ndarray) -> None:
        if self.id_limit is not None and ids.size and int(ids.max()) >= self.id_limit:
            raise UserError(f"{self._source}: vocab_size is {self.id_limit:,}, but the tokenizer gave token id "
                            f"{int(ids.max()):,}: tokenizer and encoder are not one model")

    @classmethod
    def from_dir(cls, model_dir: str | Path, max_length: int = MAX_LENGTH) -> "Tokenizer":
        """Load tokenizer.json, or build a BERT WordPiece tokenizer from vocab.txt."""
        from tokenizers import Tokenizer as HFTokenizer

        model_dir = Path(model_dir)
        for name in (TOKENIZER_FILE, "vocab.txt"):
            check_regular(model_dir / name, name)
        if (model_dir / TOKENIZER_FILE).is_file():
            try:
                return cls(HFTokenizer.from_file(str(model_dir / TOKENIZER_FILE)), max_length)
            except Exception as e:  # the tokenizers library raises plain Exceptions on bad files
                raise UserError(f"{model_dir / TOKENIZER_FILE}: cannot be read as a tokenizer "
                                f"({cut(str(e).splitlines()[0] if str(e) else type(e).__name__, 160)})") from None
        if (model_dir / "vocab.txt").is_file():
            return cls(_wordpiece_from_vocab(model_dir), max_length)
        raise UserError(f"{model_dir}: no tokenizer.json or vocab.txt; expected an HF-layout BERT or MPNet folder")

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def clip(self, text: str, budget: int | None = None) -> str:
        """`text`, or for a long one a prefix of whole words that still gives at least max_length
        tokens: its first max_length tokens (all that truncation keeps of a sentence) are the
        whole text's. The prefix grows fourfold until it does."""
        budget = budget or self.max_length * CLIP_CHARS_PER_TOKEN
        while len(text) > budget:
            prefix = _whole_words(self.backend, text[:budget])
            if prefix and len(self.backend.encode(prefix, add_special_tokens=False).ids) >= self.max_length:
                return prefix
            budget *= 4
        return text

    def clip_pair(self, a: str, b: str) -> tuple[str, str]:
        """Both sides of a pair clipped so that longest-first truncation keeps exactly what it keeps
        of the whole pair. It keeps at most max_length tokens of either side, and one token more
        of the longer side (ties: the second), so the clipped sides must also compare as the
        whole ones do: the whole sides are counted in bounded pieces, and the side that must be
        longer grows until it is."""
        clipped_a, clipped_b = self.clip(a), self.clip(b)
        if clipped_a is a and clipped_b is b:
            return a, b
        if len(a) >= len(b):  # count the shorter side whole, the other only until it passes it
            count_b = self._count(b)
            a_longer = self._count(a, stop_above=count_b) > count_b
        else:
            count_a = self._count(a)
            a_longer = self._count(b, stop_above=count_a - 1) < count_a
        count_a, count_b = self._count(clipped_a), self._count(clipped_b)
        budget = self.max_length * CLIP_CHARS_PER_TOKEN
        while a_longer and count_a <= count_b:
            budget *= 4
            clipped_a = self.clip(a, budget)
            count_a = self._count(clipped_a)
        while not a_longer and count_a > count_b:
            budget *= 4
            clipped_b = self.clip(b, budget)
            count_b = self._count(clipped_b)
        return clipped_a, clipped_b

    def _count(self, text: str, piece: int = 1 << 16, stop_above: int | None = None) -> int:
        """Tokens of the whole `text` (no special tokens), tokenized in pieces of whole words; or,
        with `stop_above`, some count above it as soon as the text is known to pass it."""
        if self._counter is None:
            from tokenizers import Tokenizer as HFTokenizer

            self._counter = HFTokenizer.from_str(self.backend.to_str())
            self._counter.no_truncation()
        total, start = 0, 0
        while start < len(text):
            chunk = text[start:start + piece]
            if start + piece < len(text):
                chunk = _whole_words(self.backend, chunk) or text[start:_word_end(text, start + piece)]
            total += len(self._counter.encode(chunk, add_special_tokens=False).ids)
            start += len(chunk)
            if stop_above is not None and total > stop_above:
                break
        return total

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Batch-encode sentences (or sentence pairs) into padded int64 arrays."""
        if pairs is None:
            encodings = self.backend.encode_batch([self.clip(t) for t in texts])
        else:
            if len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} first sentences but {len(pairs)} second sentences")
            encodings = self.backend.encode_batch([self.clip_pair(a, b) for a, b in zip(texts, pairs)])
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
        self._check_ids(batch["input_ids"])
        return batch

    def lengths(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        """Tokens per sentence (or pair), after truncation, without padding."""
        inputs = [self.clip(t) for t in texts] if pairs is None else [self.clip_pair(a, b) for a, b in zip(texts, pairs)]
        return np.array([len(e.ids) for e in self.backend.encode_batch(inputs)], dtype=np.int64)

    def save(self, out_dir: str | Path) -> Path:
        path = Path(out_dir) / TOKENIZER_FILE
        self.backend.save(str(path))
        return path


def pad_id(backend) -> int:
    """The id rows are padded with: what tokenizer.json's own padding settings name (MPNet's
    `<pad>` is 1), else BERT's [PAD], else a `<pad>` token."""
    padding = backend.padding
    if padding is not None and isinstance(padding.get("pad_id"), int):
        return padding["pad_id"]
    for token in ("[PAD]", "<pad>"):
        if backend.token_to_id(token) is not None:
            return backend.token_to_id(token)
    raise UserError("tokenizer has no padding token ([PAD] or <pad>); expected a BERT or MPNet vocabulary")


def _whole_words(backend, prefix: str) -> str:
    """`prefix` without its last word, which the cut may have split ("" if it is all one word).
    Words as the tokenizer's pre-tokenizer splits them (whitespace and punctuation for BERT), so
    the words kept tokenize exactly as they do in the whole text."""
    if backend.pre_tokenizer is not None:
        words = backend.pre_tokenizer.pre_tokenize_str(prefix)
        return prefix[:words[-1][1][0]] if len(words) > 1 else ""
    cut = max(prefix.rfind(" "), prefix.rfind("\t"), prefix.rfind("\n"))
    return prefix[:cut] if cut > 0 else ""


def _word_end(text: str, position: int) -> int:
    """Where the word running through `position` ends (the next whitespace, or the end)."""
    match = _SPACE.search(text, position)
    return match.start() if match else len(text)


_SPACE = re.compile(r"\s")


def _wordpiece_from_vocab(model_dir: Path):
    """A BERT tokenizer for checkpoints that ship vocab.txt only."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    settings = {}
    if (model_dir / "tokenizer_config.json").is_file():
        settings = read_json_dict(model_dir / "tokenizer_config.json")
        if settings is None:
            raise UserError(f"{model_dir / 'tokenizer_config.json'}: not a JSON object; restore the model folder")
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
