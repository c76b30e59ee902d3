"""Text around the token loop: chat templates, incremental detokenization, stop strings.

Chat templates render exactly as transformers' `apply_chat_template(..., tokenize=False)` does:
a sandboxed jinja2 environment with trim_blocks / lstrip_blocks, loop controls, a `tojson` that
does not HTML-escape, `raise_exception` and `strftime_now`.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

REPLACEMENT_CHAR = "\ufffd"  # what a decoder yields for an incomplete UTF-8 sequence


class _GenerationTag(Extension):
    """Accepts `{% generation %}...{% endgeneration %}` (assistant-mask markers) and renders
    the body unchanged, as transformers does when it is not tracking masks."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller: Any) -> str:
        return caller()


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    x: Any,
    ensure_ascii: bool = False,
    indent: Any = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(
    template: str,
    messages: list[dict[str, Any]],
    special_tokens: dict[str, str],
    add_generation_prompt: bool = True,
) -> str:
    """Render `messages` with the bundle's chat template (transformers-identical output)."""
    try:
        return _compile(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special_tokens
        )
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template failed: {e}") from None


def check_messages(messages: Any) -> list[dict[str, Any]]:
    """Validate a chat: a non-empty list of {"role": str, "content": str} dicts."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role', 'content'} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ValueError(f"message {i} must be a dict with a string 'role', got {m!r}")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} must have a string 'content', got {m.get('content')!r}")
        check_unicode(m["content"], f"message {i} content")
    return messages


def check_unicode(text: str, what: str) -> None:
    """Reject strings that cannot be encoded as UTF-8 (unpaired surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(
            f"{what} is not valid Unicode: unpaired surrogate {text[e.start]!r} at index {e.start}"
        ) from None


class IncrementalDetokenizer:
    """Turns a growing list of token ids into text deltas.

    Decodes a short window `ids[prefix:]` and compares it with the text of `ids[prefix:read]`
    already emitted; a delta ending in an incomplete UTF-8 sequence (U+FFFD) is held back until
    the next token completes it. `flush()` returns whatever is still held at the end.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tok = tokenizer
        self._ids: list[int] = []  # every generated token id
        self._prefix = 0  # start of the decode window
        self._read = 0  # ids before this are fully emitted

    def push(self, new_ids: list[int]) -> str:
        self._ids.extend(new_ids)
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        full_text = self._decode(self._ids[self._prefix :])
        if len(full_text) <= len(prefix_text) or full_text.endswith(REPLACEMENT_CHAR):
            return ""
        self._prefix, self._read = self._read, len(self._ids)
        return full_text[len(prefix_text) :]

    def flush(self) -> str:
        prefix_text = self._decode(self._ids[self._prefix : self._read])
        full_text = self._decode(self._ids[self._prefix :])
        self._prefix = self._read = len(self._ids)
        return full_text[len(prefix_text) :]

    def _decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=True) if ids else ""


class StopMatcher:
    """Finds stop strings in streamed text, even when they span token boundaries.

    Text that could still turn into a stop string is held back, so a stop string is never
    emitted, not even in part.
    """

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._held = ""  # tail that may be the start of a stop string
        self.stopped = False

    def feed(self, delta: str) -> str:
        """Returns the text that is safe to emit; sets `stopped` when a stop string appears."""
        if self.stopped:
            return ""
        buf = self._held + delta
        if not self._stops:
            self._held = ""
            return buf
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.stopped = True
            self._held = ""
            return buf[: min(hits)]
        keep = self._longest_partial(buf)
        self._held = buf[len(buf) - keep :] if keep else ""
        return buf[: len(buf) - keep]

    def flush(self) -> str:
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def _longest_partial(self, buf: str) -> int:
        """Length of the longest suffix of buf that is a proper prefix of some stop string."""
        best = 0
        for s in self._stops:
            for n in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:n]):
                    best = n
                    break
        return best
