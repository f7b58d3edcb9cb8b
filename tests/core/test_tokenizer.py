"""mtcli.core.tokenizer: long texts are cut to whole-word prefixes before tokenizing, with the
result truncation gives on the whole text, and in memory that does not grow with the line."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from mtcli.core.tokenizer import Tokenizer

WORDS = ["hello", "world,", "über", "a", "...", "naïve", "supercalifragilistic" * 6, "中文字", "x" * 150, "don't",
         "!!", "\t", "Ⅻ", "e\u0301"]


def _tokenizers(model_dir, max_length):
    clipped = Tokenizer.from_dir(model_dir, max_length=max_length)
    whole = Tokenizer.from_dir(model_dir, max_length=max_length)
    whole.clip = lambda text, budget=None: text
    whole.clip_pair = lambda a, b: (a, b)
    return clipped, whole


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


text = st.builds(lambda words, glue: glue.join(words), st.lists(st.sampled_from(WORDS), min_size=1, max_size=300),
                 st.sampled_from([" ", "", " ", "  "]))


@settings(max_examples=120, deadline=None)
@given(a=text, b=text, max_length=st.sampled_from([16, 17, 24]))
def test_clipped_texts_encode_as_the_whole_texts(packaged_model_dir, a, b, max_length):
    """Sentences and pairs (either side long, or both: longest-first gives the odd token to the
    longer side) come out token for token as truncating the whole text does."""
    clipped, whole = _tokenizers(packaged_model_dir, max_length)
    assert _same(clipped.encode([a]), whole.encode([a]))
    assert _same(clipped.encode([a], [b]), whole.encode([a], [b]))
    assert list(clipped.lengths([a], [b])) == list(whole.lengths([a], [b]))


def test_short_texts_are_not_touched(packaged_model_dir):
    tokenizer = Tokenizer.from_dir(packaged_model_dir)
    text = "a fine sentence " * 100  # 1,600 characters: under the first budget of 2,048
    assert tokenizer.clip(text) is text
    long = "word " * 10_000
    assert len(tokenizer.clip(long)) <= 2048 and long.startswith(tokenizer.clip(long))


@pytest.mark.slow
def test_a_line_of_tens_of_megabytes_scores_in_bounded_memory(tiny_export, tmp_path):
    """The issue measured 954 MB peak for a 5 MB line (the whole text tokenized, then truncated).
    Scoring a 40 MB line takes the text itself a few times over (the line's bytes, the decoded
    line, the CSV reader's field buffer, the field, its stripped copy: about 6x here), but not
    the tokenizer's hundreds of bytes per character."""
    def peak_mb(path) -> tuple[float, str]:
        code = ("import re, sys\nfrom mtcli.cli import main\n"
                f"sys.argv = ['mtcli', 'score', 'sst', {str(path)!r}, '-o', {str(path) + '.out'!r}, "
                f"'--model', {str(tiny_export)!r}]\n"
                "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
                # VmHWM: this process image's peak (ru_maxrss would carry over the forking parent's)
                "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1], file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
        assert done.returncode == 0, done.stderr[-2000:]
        return int(done.stderr.strip().splitlines()[-1]) / 1024, str(path) + ".out"

    small = tmp_path / "small.tsv"
    small.write_text("id\tsentence\n1\thello world\n2\tgood film\n")
    big = tmp_path / "big.tsv"
    line = "a great film, truly! " * (40_000_000 // 21)
    big.write_text(f"id\tsentence\n1\t{line}\n2\tgood film\n")
    base, _ = peak_mb(small)
    peak, out = peak_mb(big)
    print(f"peak RSS {base:.0f} MB (2 rows) -> {peak:.0f} MB (a {len(line) / 2**20:.0f} MB line)")
    assert peak - base < 8 * len(line) / 2**20, (base, peak)
    rows = open(out).read().splitlines()
    assert len(rows) == 3 and rows[1].startswith("1\t")
    tokenizer = Tokenizer.from_dir(tiny_export)
    assert _same(tokenizer.encode([line[:100_000]]), tokenizer.encode([line]))  # the same tokens as a prefix gives


def test_seen_as_keys_texts_the_model_cannot_tell_apart(packaged_model_dir):
    tokenizer = Tokenizer.from_dir(packaged_model_dir)
    a, b, c = tokenizer.seen_as(["A  DOG runs. ", "a dog runs.", "a cat runs."])
    assert a == b != c and len(a) == 4   # uncased BERT: case and spacing aside; no [CLS] / [SEP]
    assert len(tokenizer.seen_as(["word " * 1000])[0]) == tokenizer.max_length


def test_token_ids_past_the_encoders_vocabulary_are_refused(packaged_model_dir):
    from mtcli.core.errors import UserError

    tokenizer = Tokenizer.from_dir(packaged_model_dir)
    tokenizer.check_vocabulary(tokenizer.vocab_size, "config.json")   # its own encoder's: fine
    with pytest.raises(UserError, match="config.json: vocab_size is 1,000, but the tokenizer has token id 30,521"):
        tokenizer.check_vocabulary(1000, "config.json")
    tokenizer.id_limit = 1000   # what a batch is checked against (a post-processor may add ids of its own)
    with pytest.raises(UserError, match="but the tokenizer gave token id"):
        tokenizer.encode(["zebra"])
