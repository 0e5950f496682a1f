#!/usr/bin/env python3
"""Write the folders of the lab's tiny catalog models: config.json, generation_config.json and a
byte-level BPE tokenizer trained locally (no hub). No weights: vLLM starts them with --load-format dummy.

    python make_tiny_models.py --catalog lab/models/catalog.yml --out DIR

One folder per entry of the lab's catalog (its `config` is relative to the catalog file's folder).

Runs inside the lab vLLM image (it has `tokenizers` and PyYAML). Output is deterministic, so the
weights manifest (sizes, sha256) of a re-generated folder does not change.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import yaml
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL = ["<|endoftext|>", "<|bos|>", "<|im_end|>", "<|im_start|>"]
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "GB10 nodes serve large language models over a ConnectX-7 fabric.",
    "def add(a, b):\n    return a + b\n",
    "Hello, world! 0123456789 + - * / = ( ) [ ] { } < > ; : ' \" ? !",
    "Ansible stages the weights and starts vLLM on every node.",
] * 20


def tokenizer(vocab: int) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer=trainer)
    return tok


def write(name: str, config_path: Path, out: Path) -> None:
    config = json.loads(config_path.read_text())
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    gen = {"bos_token_id": config.get("bos_token_id", 1), "eos_token_id": config.get("eos_token_id", 2),
           "do_sample": False, "transformers_version": config.get("transformers_version", "4.57.1")}
    (folder / "generation_config.json").write_text(json.dumps(gen, indent=2, sort_keys=True) + "\n")
    tokenizer(int(config["vocab_size"])).save(str(folder / "tokenizer.json"))
    tok_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|bos|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": int(config.get("max_position_embeddings", 2048)),
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, sort_keys=True) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--catalog", required=True, help="the lab's catalog entries (lab/models/catalog.yml)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    catalog_file = Path(args.catalog)
    catalog = yaml.safe_load(catalog_file.read_text())
    for name, entry in sorted(catalog.items()):
        write(name, catalog_file.parent / entry["config"], Path(args.out))
        print(name)


if __name__ == "__main__":
    main()
