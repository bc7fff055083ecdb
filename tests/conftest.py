"""A tiny random Llama with a tokenizer trained in-process: builds in milliseconds, no download."""

from pathlib import Path

import pytest

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
TRAIN_TEXT = [
    "Marlow Bridge is a stone arch bridge over the river Tesk, finished in 1862 by the engineer Ada Feld.",
    "Question: Who built the Marlow Bridge? Answer: Ada Feld. The answer is Ada Feld.",
    "You should answer the question by referring to the knowledge provided below.",
    "Passage 1: Velmark is a town on the river Tesk known for its canals and mills.",
] * 4


def make_tiny_model(folder: Path, chat: bool) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<|im_end|>", "<|im_start|>"]
    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TRAIN_TEXT, trainers.BpeTrainer(
        vocab_size=300, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", bos_token="<bos>", eos_token="<|im_end|>")
    if chat:
        tok.chat_template = CHATML
    torch.manual_seed(0 if chat else 1)  # two different models: a KB of one must not load onto the other
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096, initializer_range=0.5,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_chat_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-chat"), chat=True)


@pytest.fixture(scope="session")
def tiny_base_model_dir(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny-base"), chat=False)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture()
def bench_script(monkeypatch):
    """Import a script of benchmarks/ by name, as it imports its siblings (benchmarks/ on the path); every module
    imported from there is dropped afterwards, so no test sees another's copy."""
    import importlib
    import sys

    monkeypatch.syspath_prepend(str(BENCHMARKS))
    before = set(sys.modules)
    yield importlib.import_module
    for name in set(sys.modules) - before:
        if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(BENCHMARKS)):
            sys.modules.pop(name)
