"""One prompt format shared by training and reading, so a module is asked exactly the way it was taught.

It is the tokenizer's chat template with a short system turn (empty by default) instead of the model's
default system prompt (20 tokens for SmolLM2), which would otherwise cost ~40% of every QA example.
Models without a chat template fall back to ``Question: ...\\nAnswer:``.
"""

from __future__ import annotations

from typing import Any

from .text import with_context
from .types import Example

PLAIN_PROMPT = "Question: {question}\nAnswer:"


class PromptFormat:
    def __init__(self, tokenizer: Any, system_prompt: str = "") -> None:
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.chat = bool(getattr(tokenizer, "chat_template", None))
        self.end = self._end_of_turn()
        self.end_ids: list[int] = self.tokenizer(self.end, add_special_tokens=False)["input_ids"] if self.end else []

    def _messages(self, question: str, context: str | None = None) -> list[dict[str, str]]:
        content = with_context(question, context)
        return [{"role": "system", "content": self.system_prompt}, {"role": "user", "content": content}]

    def prompt(self, question: str, context: str | None = None) -> str:
        """The text that precedes the answer. ``context`` (retrieved chunks, ICL facts) goes before the question."""
        if not self.chat:
            return PLAIN_PROMPT.format(question=with_context(question, context)) + " "
        return str(
            self.tokenizer.apply_chat_template(self._messages(question, context), tokenize=False, add_generation_prompt=True)
        )

    def render(self, conversation: list[dict[str, str]]) -> str:
        """A whole conversation, ready for the assistant's next turn (our short system turn if it has none)."""
        for i, msg in enumerate(conversation):
            if not isinstance(msg, dict) or msg.get("role") not in ("system", "user", "assistant", "tool"):
                raise ValueError(f"conversation[{i}]: expected {{'role': system|user|assistant, 'content': str}}, got {msg!r:.80}")
        if not self.chat:
            lines = [f"{m['role'].capitalize()}: {m['content']}" for m in conversation]
            return "\n".join(lines) + "\nAssistant: "
        msgs = list(conversation)
        if not msgs or msgs[0]["role"] != "system":
            msgs = [{"role": "system", "content": self.system_prompt}, *msgs]
        return str(self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True))

    def _end_of_turn(self) -> str:
        """What the chat template writes after an assistant message (e.g. ``<|im_end|>``); else the EOS token."""
        eos = self.tokenizer.eos_token or ""
        if not self.chat:
            return eos
        marker = "\x00ANSWER\x00"
        head = self.prompt("q")
        full = str(
            self.tokenizer.apply_chat_template(
                [*self._messages("q"), {"role": "assistant", "content": marker}], tokenize=False
            )
        )
        if not full.startswith(head) or marker not in full:
            return eos
        return full[full.index(marker) + len(marker) :].rstrip() or eos

    def encode(self, example: Example) -> tuple[list[int], list[bool]]:
        """Token ids and a loss mask (True on the tokens the model must learn to produce).

        A context example is rendered by ``prompt(example.prompt, example.context)``, the same call ``ask(context=)``
        makes, so context-mixed training sees exactly the tokens a hybrid read feeds."""
        tok = self.tokenizer
        if example.prompt is None:
            # Plain text: learn every token (the first has no context to be predicted from).
            ids = tok(example.completion, add_special_tokens=True)["input_ids"] + self.end_ids
            return ids, [False] + [True] * (len(ids) - 1)
        prompt_ids = tok(self.prompt(example.prompt, example.context), add_special_tokens=False)["input_ids"]
        answer_ids = tok(example.completion, add_special_tokens=False)["input_ids"] + self.end_ids
        return prompt_ids + answer_ids, [False] * len(prompt_ids) + [True] * len(answer_ids)

    def clean(self, text: str) -> str:
        """Cut a generated answer at the end-of-turn marker."""
        if self.end and self.end in text:
            text = text[: text.index(self.end)]
        return text.strip()
