"""Loss masks from message boundaries, checked token by token on three template families.

Each tokenizer is written to disk by the test (the builtin vocabulary plus the family's
special tokens and chat template) and loaded back like any model's tokenizer files.
"""

from __future__ import annotations

import pytest

from training_scripts.data import IGNORE_INDEX, Example, encode
from training_scripts.modeling import BUILTIN_DIR

transformers = pytest.importorskip("transformers")

LLAMA3 = (
    "{{ '<|begin_of_text|>' }}{% for m in messages %}"
    "{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n' + m['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Mistral style: the system prompt is folded into the first user turn; no generation prompt.
MISTRAL = (
    "{{ '<s>' }}{% set system = messages[0]['content'] if messages[0]['role'] == 'system' else '' %}"
    "{% for m in messages if m['role'] != 'system' %}"
    "{% if m['role'] == 'user' %}{{ '[INST] ' + ((system + '\n\n') if loop.first and system else '') + m['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + m['content'] + '</s>' }}{% endif %}{% endfor %}"
)
FAMILIES = {
    "llama3": (
        LLAMA3,
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "<|eot_id|>",
    ),
    "chatml": (CHATML, [], "<|im_end|>\n"),
    "mistral": (MISTRAL, ["<s>", "</s>", "[INST]", "[/INST]"], "</s>"),
}

CONVERSATION = [
    {"role": "system", "content": "Route tickets."},
    {"role": "user", "content": "My card is gone."},
    {"role": "assistant", "content": "card_lost_stolen"},
    {"role": "user", "content": "Also a charge I do not know."},
    {"role": "assistant", "content": "fraud_report"},
]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    template, specials, end = FAMILIES[request.param]
    tokenizer = transformers.AutoTokenizer.from_pretrained(BUILTIN_DIR / "tiny-chat")
    if specials:
        tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template = template
    directory = tmp_path_factory.mktemp(request.param)
    tokenizer.save_pretrained(directory)
    return request.param, transformers.AutoTokenizer.from_pretrained(directory), end


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def trained_runs(encoded) -> list[list[int]]:
    runs: list[list[int]] = []
    previous = IGNORE_INDEX
    for label in encoded.labels:
        if label != IGNORE_INDEX:
            if previous == IGNORE_INDEX:
                runs.append([])
            runs[-1].append(label)
        previous = label
    return runs


def answer_ids(name: str, tokenizer, content: str, end: str) -> list[int]:
    # Mistral writes a space before the answer; it belongs to the answer's turn.
    text = (" " if name == "mistral" else "") + content + end
    return ids(tokenizer, text)


def test_every_assistant_turn_exactly(family) -> None:
    name, tokenizer, end = family
    encoded = encode(Example(CONVERSATION, line=1), tokenizer, "assistant")
    assert encoded.input_ids == ids(
        tokenizer, tokenizer.apply_chat_template(CONVERSATION, tokenize=False)
    )
    assert trained_runs(encoded) == [
        answer_ids(name, tokenizer, "card_lost_stolen", end),
        answer_ids(name, tokenizer, "fraud_report", end),
    ]


def test_last_assistant_only(family) -> None:
    name, tokenizer, end = family
    encoded = encode(Example(CONVERSATION, line=1), tokenizer, "last_assistant")
    assert trained_runs(encoded) == [answer_ids(name, tokenizer, "fraud_report", end)]
    # ...and it sits at the very end of the sequence.
    n = len(trained_runs(encoded)[0])
    assert encoded.labels[-n:] == encoded.input_ids[-n:]


def test_weight_zero_turn_is_skipped(family) -> None:
    name, tokenizer, end = family
    messages = [dict(m) for m in CONVERSATION]
    messages[4]["weight"] = 0
    encoded = encode(Example(messages, line=1), tokenizer, "assistant")
    assert trained_runs(encoded) == [answer_ids(name, tokenizer, "card_lost_stolen", end)]


def test_all_trains_every_token(family) -> None:
    _, tokenizer, _ = family
    encoded = encode(Example(CONVERSATION, line=1), tokenizer, "all")
    assert encoded.labels == encoded.input_ids
