"""An `mtcli export --format hf` folder loaded by the peers, against mtcli's own embeddings.

    pip install sentence-transformers transformers        # bench-only peers
    mtcli export --checkpoint runs/demo/best --format hf --out demo-model
    python bench/hf_parity.py demo-model --checkpoint runs/demo/best [--sentences 200]

Embeds the first --sentences STS-B dev sentences three ways: mtcli's checkpoint (torch, the
run's pooling), SentenceTransformer(folder).encode, and AutoModel.from_pretrained(folder) with
the same pooling, and prints the largest difference of each from mtcli's. Then the round trip:
the folder as `--model-dir` loads back into mtcli's encoder with equal outputs.
"""

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from mtcli.core.encoding import encode  # noqa: E402
from mtcli.model import MinBert  # noqa: E402
from mtcli.model.checkpoint import load_checkpoint  # noqa: E402
from mtcli.model.multitask import pool  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--sentences", type=int, default=200)
    args = parser.parse_args()
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel

    with open(Path(__file__).resolve().parent.parent / "data" / "sts-dev.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    sentences = [r["sentence1"] for r in rows][: args.sentences]
    model, tokenizer, _ = load_checkpoint(args.checkpoint)
    batch = {k: torch.from_numpy(v) for k, v in encode(tokenizer, "single", [(s,) for s in sentences]).items()}
    with torch.no_grad():
        ours = model.encode("single", batch)
        st = torch.from_numpy(SentenceTransformer(str(args.folder), device="cpu").encode(sentences, batch_size=32))
        hf = AutoModel.from_pretrained(args.folder).eval()
        hidden = hf(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        transformers_pooled = pool(hidden, batch["attention_mask"], model.head_config.pooling)
        again = MinBert.from_pretrained(args.folder).eval()
        round_trip = pool(again(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"],
                          model.head_config.pooling)
    print(f"{len(sentences)} sentences, {model.encoder.config.model_type}, {model.head_config.pooling} pooling")
    for name, other in (("sentence-transformers encode", st), ("transformers AutoModel", transformers_pooled),
                        ("mtcli --model-dir round trip", round_trip)):
        print(f"  {name:30s} max |diff| = {(other - ours).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
