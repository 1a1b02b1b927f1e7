"""Generated tokens to text, one token at a time: incremental detokenizing and stop strings.

Decoding token by token breaks multi-byte characters and word-initial spaces, so we
decode a small window of recent tokens twice and emit only the difference once it no
longer ends in U+FFFD (a partial UTF-8 sequence) - the scheme of Hugging Face TGI's
`decode_token` and vLLM's `detokenize_incrementally`.

Stop strings (OpenAI `stop`) are matched on the text, across token boundaries; text that
could be the start of a stop string is held back from a stream until it is decided, and
the stop string itself is never returned (OpenAI API reference: "The returned text will
not contain the stop sequence").
"""

from __future__ import annotations

from typing import Any


class IncrementalText:
    def __init__(self, tokenizer: Any, stop: list[str] | tuple[str, ...] = ()):
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.text = ""  # everything decoded so far (cut at a stop string once found)
        self.released = 0  # how much of self.text has been handed out
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def add(self, token_id: int) -> str:
        """Append one token; return the text now safe to send (may be empty)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            before = len(self.text)
            self.text += full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            if self.stop:
                self._find_stop(before)
        return self._release()

    def _find_stop(self, before: int) -> None:
        cut = None
        for stop in self.stop:
            at = self.text.find(stop, max(0, before - len(stop) + 1))
            if at != -1 and (cut is None or at < cut):
                cut = at
        if cut is not None:
            self.text = self.text[:cut]
            self.stopped = True

    def _release(self) -> str:
        end = len(self.text)
        if self.stop and not self.stopped:
            end -= self._held_back()
        if end <= self.released:
            return ""
        out = self.text[self.released : end]
        self.released = end
        return out

    def _held_back(self) -> int:
        """Length of the longest tail of the text that starts some stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(self.text)), longest, -1):
                if self.text.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def finish(self) -> str:
        """The rest, when generation ends: held-back text that turned out not to be a stop,
        and a trailing partial character (as U+FFFD, like a full decode would give)."""
        if not self.stopped and self.read_offset < len(self.ids):
            prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
            full = self._decode(self.ids[self.prefix_offset :])
            before = len(self.text)
            self.text += full[len(prefix) :]
            self.read_offset = len(self.ids)
            if self.stop:
                self._find_stop(before)
        out = self.text[self.released :]
        self.released = len(self.text)
        return out
