"""The model card's quoting (mtcli/export/card.py): YAML front matter that reads back as
written, Markdown text that shows as written, fences longer than what they hold. The card
end to end, from hostile run folders: tests/cli/test_hostile_surfaces.py."""

import math

from conftest import HOSTILE_KEYS
from mtcli.export.card import fenced, md_text, yaml_value


def test_yaml_value_reads_back_as_the_value():
    import yaml

    value = {"keys": {k: [k, 1, -2.5, None, True] for k in HOSTILE_KEYS}, "big": 10**30, "lone": "a\ud800b"}
    text = yaml_value(value)
    assert text.isascii() and "\n" not in text
    back = yaml.safe_load(text)
    assert back["keys"] == value["keys"] and back["big"] == 10**30 and back["lone"] == "a\ufffdb"
    assert math.isnan(yaml.safe_load(yaml_value(float("nan")))) and yaml.safe_load(yaml_value(-math.inf)) == -math.inf


def test_md_text_leaves_no_markdown_or_html():
    assert md_text("a|b\nc\u2028d") == "a\\|b c d"
    assert md_text("<script>x</script> [a](http://x) `c` *e*") == \
        "\\<script\\>x\\</script\\> \\[a\\]\\(http://x\\) \\`c\\` \\*e\\*"
    assert md_text("sst-train.csv") == "sst-train.csv"


def test_a_fence_is_longer_than_any_run_of_backticks_it_holds():
    assert fenced("a = 1", "toml") == ["```toml", "a = 1", "```"]
    assert fenced("x = \"````\"", "toml")[0] == "`````toml" and fenced("x = \"````\"", "toml")[-1] == "`````"
