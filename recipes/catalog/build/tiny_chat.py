"""Build the offline base model `builtin:tiny-chat`: a ~4M-parameter Llama chat model.

It exists so that recipes, tests and the quickstart can fine-tune a real Hugging Face model
with no network. The tokenizer and weights are trained here, on CPU, from the synthetic text in
`support_data`, so nothing third-party ends up in the repository.

Run from the repository root:  python -m recipes.catalog.build.tiny_chat [--max-tokens N]
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from recipes.catalog.build import support_data

REPO_ROOT = Path(__file__).resolve().parents[3]
OUT_DIR = REPO_ROOT / "training_scripts" / "builtin" / "tiny-chat"

VOCAB_SIZE = 4096
PAD, IM_START, IM_END, EOT = "<|pad|>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"
SPECIAL_TOKENS = [PAD, IM_START, IM_END, EOT]  # list order fixes the ids: <|pad|> is 0
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

SEED = 0
N_DOCS = 30_000
SEQ_LEN = 256
BATCH_SIZE = 8
PEAK_LR = 1e-3
MIN_LR_RATIO = 0.1
WARMUP_STEPS = 30
LOG_EVERY = 20
DEFAULT_MINUTES = 40.0  # a guard only: the token budget decides, so rebuilds are repeatable
DEFAULT_MAX_TOKENS = 1_600_000
DEMO_SEED = "tiny-chat-demo"


# --------------------------------------------------------------------------- tokenizer


def _tokenizer_texts(corpus: Sequence[list[dict]], train: Sequence[dict]) -> list[str]:
    """Message contents and role names; specials are added by the trainer, not learned.

    From the fine-tuning data only the tickets are used: were the labels merged into tokens of
    their own, those tokens would never occur in pretraining and stay untrained.
    """
    texts = [message["content"] for conversation in corpus for message in conversation]
    texts += [row["messages"][1]["content"] for row in train]
    texts += ["system", "user", "assistant"]
    return texts


def build_tokenizer(texts: Sequence[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE: every UTF-8 string (accents included) encodes and decodes losslessly."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=IM_END,  # a chat turn ends with <|im_end|>, so generation stops there
        bos_token=None,
        additional_special_tokens=[IM_START, EOT],
        model_max_length=1024,
        chat_template=CHAT_TEMPLATE,
        clean_up_tokenization_spaces=False,
    )


def check_round_trip(tokenizer: PreTrainedTokenizerFast) -> None:
    sample = "Grüße aus München! ¿Dónde está mi tarjeta? J'ai reçu 1 250,00 € — merci.\n\n  ok"
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids) == sample, "byte-level BPE must round-trip text exactly"
    assert tokenizer.convert_tokens_to_ids(PAD) == 0


# --------------------------------------------------------------------------- data


def encode_conversations(
    tokenizer: PreTrainedTokenizerFast, conversations: Sequence[list[dict]]
) -> list[list[int]]:
    """Render with the chat template, then tokenize; each document ends with <|endoftext|>."""
    texts = [tokenizer.apply_chat_template(c, tokenize=False) for c in conversations]
    eot = tokenizer.convert_tokens_to_ids(EOT)
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    # Long tickets can exceed a row; keep their start, the model still learns the wording.
    return [(ids + [eot])[:SEQ_LEN] for ids in encoded]


def pack(documents: Sequence[list[int]], seq_len: int) -> torch.Tensor:
    """Pack whole documents into rows padded with id 0, filling each row as tightly as possible.

    Documents are never split, so every row starts at a conversation start, just like the
    single conversations the model later sees when fine-tuned. Each row takes the longest
    remaining document that still fits (lengths are bucketed, so this stays cheap), which wastes
    far fewer pad tokens than packing in corpus order.
    """
    buckets: list[list[list[int]]] = [[] for _ in range(seq_len + 1)]
    for ids in reversed(documents):  # pop() from the end then yields corpus order per length
        buckets[len(ids)].append(ids)
    rows: list[list[int]] = []
    for longest in range(seq_len, 0, -1):
        while buckets[longest]:
            row = list(buckets[longest].pop())
            _fill_row(row, buckets, seq_len)
            rows.append(row + [0] * (seq_len - len(row)))
    return torch.tensor(rows, dtype=torch.long)


def _fill_row(row: list[int], buckets: list[list[list[int]]], seq_len: int) -> None:
    space = seq_len - len(row)
    while space > 0:
        size = next((n for n in range(space, 0, -1) if buckets[n]), 0)
        if not size:
            return
        row.extend(buckets[size].pop())
        space -= size


# --------------------------------------------------------------------------- model and training


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=256,
        intermediate_size=688,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END),
        pad_token_id=0,
        bos_token_id=None,
    )
    return LlamaForCausalLM(config)


def learning_rate(step: int, progress: float) -> float:
    """Linear warmup, then cosine to 10% over the token budget."""
    warmup = min(1.0, (step + 1) / WARMUP_STEPS)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return PEAK_LR * warmup * (MIN_LR_RATIO + (1.0 - MIN_LR_RATIO) * cosine)


def _batches(rows: torch.Tensor, generator: torch.Generator):
    """Endless stream of shuffled batches, reshuffled every epoch."""
    while True:
        order = torch.randperm(len(rows), generator=generator)
        for start in range(0, len(order) - BATCH_SIZE + 1, BATCH_SIZE):
            yield rows[order[start : start + BATCH_SIZE]]


def _loss(model: LlamaForCausalLM, batch: torch.Tensor) -> torch.Tensor:
    # Right padding under a causal mask never influences real tokens, so no attention mask is
    # needed; pads are only excluded from the loss.
    logits = model(input_ids=batch).logits[:, :-1]
    targets = batch[:, 1:].masked_fill(batch[:, 1:] == 0, -100)
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100
    )


def pretrain(model: LlamaForCausalLM, rows: torch.Tensor, minutes: float, max_tokens: int) -> dict:
    """Causal-LM pretraining until the token budget is spent (the time budget is a guard)."""
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=PEAK_LR, betas=(0.9, 0.95), weight_decay=0.01
    )
    generator = torch.Generator().manual_seed(SEED)
    budget_s, start = minutes * 60.0, time.monotonic()
    step, tokens, window, history = 0, 0, [], []
    model.train()
    for batch in _batches(rows, generator):
        progress = tokens / max_tokens
        if progress >= 1.0:
            break
        if time.monotonic() - start > budget_s:
            print("warning: time guard reached before the token budget; weights will differ")
            break
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, progress)
        loss = _loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step, tokens = step + 1, tokens + int((batch != 0).sum())
        window.append(loss.item())
        if step == 1 or step % LOG_EVERY == 0:
            history.append(_log(step, window, tokens, time.monotonic() - start, optimizer))
            window = []
    elapsed = time.monotonic() - start
    return {"steps": step, "tokens": tokens, "seconds": elapsed, "history": history}


def _log(step: int, window: list[float], tokens: int, elapsed: float, optimizer) -> float:
    loss = sum(window) / len(window)
    lr = optimizer.param_groups[0]["lr"]
    print(
        f"step {step:5d}  loss {loss:.3f}  lr {lr:.2e}  tokens {tokens:,}  "
        f"{tokens / elapsed:,.0f} tok/s",
        flush=True,
    )
    return loss


# --------------------------------------------------------------------------- saving


MODEL_CARD = """\
# tiny-chat (`builtin:tiny-chat`)

A ~4M-parameter Llama-architecture chat model (4 layers, hidden size 256, vocabulary 4096,
ChatML template, bfloat16 weights) bundled with this repository so that recipes, tests and the
quickstart can fine-tune a real Hugging Face model fully offline, on a laptop CPU.

**It is a toy for offline tests, not a useful model.** It only knows the narrow style of the
synthetic text it was trained on.

## How it was built

- Tokenizer: byte-level BPE (vocabulary 4096) trained with `tokenizers` on the synthetic
  pretraining corpus and the training split of the support-ticket data (never the golden split).
  Special tokens: `<|pad|>` (id 0), `<|im_start|>`, `<|im_end|>` (end of turn, EOS),
  `<|endoftext|>`.
- Model: `LlamaForCausalLM`, randomly initialised, then pretrained for about ten minutes on CPU
  with a causal-LM loss on chat conversations: support tickets answered by a helpful agent in
  free text, generic "answer with one listed tag" tasks on other tag sets (finance vs healthcare,
  urgent vs routine, ...), and short general conversations. It never sees the ten support
  queues, so a fine-tune has to teach which queue a ticket belongs to.

{stats}

## Data and licence

Everything it was trained on is synthetic text generated by
`recipes/catalog/build/support_data.py` in this repository, so the weights and tokenizer carry
no third-party data or licence obligations.

## Rebuild

```bash
python -m recipes.catalog.build.support_data
python -m recipes.catalog.build.tiny_chat
```

Training stops on a token budget with fixed seeds, so a rebuild on the same library
versions repeats the same steps.
"""


def save(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, stats: str) -> None:
    """Replace the output directory with bf16 weights, tokenizer, generation config and card."""
    shutil.rmtree(OUT_DIR, ignore_errors=True)
    OUT_DIR.mkdir(parents=True)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.convert_tokens_to_ids(IM_END), pad_token_id=0
    )
    model.to(torch.bfloat16).save_pretrained(OUT_DIR)
    tokenizer.save_pretrained(OUT_DIR)
    (OUT_DIR / "README.md").write_text(MODEL_CARD.replace("{stats}", stats), encoding="utf-8")
    for path in OUT_DIR.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; these files ship as package data


def _stats_text(result: dict, n_params: int, n_rows: int) -> str:
    history = result["history"]
    return (
        f"Last build: {n_params:,} parameters, {result['steps']} steps of "
        f"{BATCH_SIZE}x{SEQ_LEN} tokens ({n_rows:,} packed rows), {result['tokens']:,} tokens "
        f"in {result['seconds'] / 60:.1f} min; loss {history[0]:.2f} -> {history[-1]:.2f}."
    )


# --------------------------------------------------------------------------- checks


def report_train_lengths(tokenizer: PreTrainedTokenizerFast, train: Sequence[dict]) -> None:
    """Token counts of the full rendered fine-tuning conversations (system, ticket, label)."""
    texts = [tokenizer.apply_chat_template(row["messages"], tokenize=False) for row in train]
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    print(
        f"train conversations: tokens min {min(lengths)}  median {statistics.median(lengths)}  "
        f"max {max(lengths)}"
    )


def demo_generation() -> str:
    """Reload from disk exactly as users will, and answer one support ticket greedily."""
    tokenizer = AutoTokenizer.from_pretrained(OUT_DIR)
    model = AutoModelForCausalLM.from_pretrained(OUT_DIR, dtype=torch.float32).eval()
    rng = random.Random(DEMO_SEED)
    ticket = support_data.make_ticket("card_lost_stolen", [], rng)
    conversation = [
        {"role": "system", "content": "You are a friendly customer support agent."},
        {"role": "user", "content": ticket},
    ]
    prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=80, do_sample=False)
    reply = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    print(f"demo ticket: {ticket!r}\ndemo reply:  {reply!r}")
    return reply


# --------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=DEFAULT_MINUTES, help="time budget")
    parser.add_argument("--max-tokens", type=int, default=DEFAULT_MAX_TOKENS, help="token budget")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.manual_seed(SEED)
    torch.set_num_threads(2)  # the reference build machine has two cores
    corpus = support_data.pretraining_corpus(N_DOCS, seed=SEED)
    train = support_data.build_train()
    tokenizer = build_tokenizer(_tokenizer_texts(corpus, train))
    check_round_trip(tokenizer)
    print(f"tokenizer: {len(tokenizer)} tokens")
    report_train_lengths(tokenizer, train)
    rows = pack(encode_conversations(tokenizer, corpus), SEQ_LEN)
    model = build_model(tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters; {len(rows):,} packed rows of {SEQ_LEN} tokens")
    result = pretrain(model, rows, args.minutes, args.max_tokens)
    stats = _stats_text(result, n_params, len(rows))
    print(stats)
    save(model, tokenizer, stats)
    print(f"saved to {OUT_DIR}")
    reply = demo_generation()
    assert reply.strip() not in support_data.LABELS, "base model should chat, not classify"


if __name__ == "__main__":
    main()
