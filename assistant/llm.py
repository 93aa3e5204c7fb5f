"""The optional generative answer layer: an OpenAI-compatible chat server writes the answer.

Configured with ``ASSISTANT_LLM_URL`` and ``ASSISTANT_LLM_MODEL`` (``ASSISTANT_LLM_API_KEY``
optional); installed with ``pip install 'assistant[llm]'`` (llama-index's ``OpenAILike``).
The model answers from the same numbered passages the extractive answerer retrieved. Every
``[n]`` it writes must name one of them: the citation is the passage sentence that best
matches the generated sentence carrying the marker, an exact span of the file. Markers that
name no passage are removed. When the server fails or the answer cites nothing, the
extractive answer is returned with a one-line ``notice``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from assistant.chunking import split_sentences
from assistant.corpus import read_text
from assistant.settings import AssistantError, Settings, default_prompts_dir
from assistant.text import STOPWORDS, stem, words
from assistant.types import Answer, Citation, Passage

if TYPE_CHECKING:
    from llama_index.llms.openai_like import OpenAILike

log = logging.getLogger(__name__)

PROMPTS_DIR = default_prompts_dir()  # the shipped templates (packaged or the source tree's)
ANSWER_SYSTEM = "answer_system.txt"
ANSWER_USER = "answer_user.txt"
CONDENSE = "condense.txt"
INSTALL_HINT = "pip install 'assistant[llm]'"
MAX_TOKENS = 600

# "[2]", "[1, 3]", "[1,3]": passage markers in the generated text (with the space before).
_MARKER = re.compile(r"(\s*)\[(\s*\d{1,3}(?:\s*,\s*\d{1,3})*\s*)\]")
# An unfinished marker at the end of the streamed text so far.
_OPEN_MARKER = re.compile(r"\s*\[[\d,\s]*$")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_TAG = re.compile(r"<(/?)(passages?|conversation)\b", re.IGNORECASE)
_DONT_KNOW = re.compile(
    r"\b(?:i|we)\s+(?:do\s+not|don[’']t|cannot|can[’']t|am\s+unable\s+to)\s+"
    r"(?:know|tell|answer|say|determine|find)"
    r"|\b(?:passages?|articles?|context|sources?|texts?)\s+(?:do|does|did)\s*(?:not|n[’']t)\s+"
    r"(?:contain|say|mention|answer|provide|include|state|specify|give)"
    r"|\b(?:unable|not\s+able)\s+to\s+(?:answer|find|determine)"
    r"|\bno\s+(?:information|mention)\b|\bnot\s+(?:mentioned|stated|specified)\b",
    re.IGNORECASE,
)


class LLMUnavailable(Exception):
    """The language model failed; the message is a short reason for the user."""


# -- prompts -----------------------------------------------------------------------------------
def prompts_dir(settings: Settings) -> Path:
    """Where the prompt templates are read from (``ASSISTANT_PROMPTS_DIR`` or ``prompts/``)."""
    custom = getattr(settings, "prompts_dir", None)
    return Path(custom) if custom else PROMPTS_DIR


def load_prompt(settings: Settings, name: str) -> str:
    """The text of one prompt template, read at run time so that a user can edit it.

    A template missing from ``ASSISTANT_PROMPTS_DIR`` is taken from the shipped ones.
    """
    for folder in dict.fromkeys([prompts_dir(settings), PROMPTS_DIR]):
        path = folder / name
        if path.is_file():
            return read_text(path).strip()
    raise AssistantError(f"prompt template {name} not found in {prompts_dir(settings)}")


def render(template: str, values: dict[str, str]) -> str:
    """Fill the ``{name}`` placeholders of ``template`` in one pass (other braces stay)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def _required(template: str, name: str, keys: Sequence[str]) -> str:
    missing = [k for k in keys if "{" + k + "}" not in template]
    if missing:
        raise AssistantError(f"prompt template {name} lacks " +
                             ", ".join("{" + k + "}" for k in missing))
    return template


def _defang(text: str) -> str:
    """Passage text that cannot close or open the prompt's ``<passages>`` block."""
    return _TAG.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", text)


def format_passages(passages: Sequence[Passage]) -> str:
    """The numbered passages as they appear in the prompt: ``[n] title (path)`` + text."""
    blocks = []
    for n, p in enumerate(passages, start=1):
        title = " ".join((p.title or p.path).split())
        blocks.append(f"[{n}] {_defang(title)} ({_defang(p.path)})\n"
                      f"<passage>\n{_defang(p.text.strip())}\n</passage>")
    return "\n\n".join(blocks)


def answer_messages(settings: Settings, question: str,
                    passages: Sequence[Passage]) -> list[dict[str, str]]:
    """The chat messages of one answer request: the system rules, then passages + question."""
    system = load_prompt(settings, ANSWER_SYSTEM)
    user = _required(load_prompt(settings, ANSWER_USER), ANSWER_USER, ("passages", "question"))
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": render(user, {"passages": format_passages(passages),
                                                  "question": question})},
    ]


def condense_messages(settings: Settings, history_text: str,
                      message: str) -> list[dict[str, str]]:
    """The chat messages asking for a standalone version of a follow-up question."""
    template = _required(load_prompt(settings, CONDENSE), CONDENSE, ("history", "message"))
    return [{"role": "user", "content": render(template, {"history": _defang(history_text),
                                                          "message": message})}]


# -- the client --------------------------------------------------------------------------------
def api_base(url: str) -> str:
    """The OpenAI base URL: a bare ``http://host:port`` gets ``/v1`` (Ollama, vLLM, llama.cpp)."""
    url = url.strip().rstrip("/")
    if urlsplit(url).path in ("", "/"):
        url += "/v1"
    return url


def make_llm(settings: Settings) -> OpenAILike:
    """The llama-index ``OpenAILike`` client of the configured server (cached)."""
    return _llm(api_base(settings.llm_url or ""), settings.llm_model or "",
                settings.llm_api_key or "", float(settings.llm_timeout))


@lru_cache(maxsize=8)
def _llm(url: str, model: str, api_key: str, timeout: float) -> OpenAILike:
    try:
        from llama_index.llms.openai_like import OpenAILike
    except ImportError:
        raise AssistantError(
            f"the LLM backend needs the llm extra: {INSTALL_HINT}"
        ) from None
    # The key is always given explicitly, so that an OPENAI_API_KEY of the shell is never
    # sent to another server; local servers accept any key.
    return OpenAILike(model=model, api_base=url, api_key=api_key or "no-key",
                      is_chat_model=True, is_function_calling_model=False,
                      context_window=32_768, max_tokens=MAX_TOKENS, temperature=0.1,
                      timeout=timeout, max_retries=0)


def chat(settings: Settings, messages: Sequence[dict[str, str]],
         on_delta: Callable[[str], None] | None = None) -> str:
    """The model's reply to ``messages``, streamed to ``on_delta`` when given.

    Raises LLMUnavailable (with a short reason) when the server fails, times out or replies
    with something that is not a chat completion; AssistantError when the extra is missing.
    """
    from llama_index.core.base.llms.types import ChatMessage

    llm = make_llm(settings)
    msgs = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
    try:
        if on_delta is None:
            content = llm.chat(msgs).message.content
            if not isinstance(content, str):
                raise LLMUnavailable("unreadable reply")
            return content
        parts = []
        chunks = 0
        for chunk in llm.stream_chat(msgs):
            chunks += 1
            delta = chunk.delta or ""
            if delta:
                parts.append(delta)
                on_delta(delta)
        if not chunks:  # not an event stream (an HTML error page, say)
            raise LLMUnavailable("unreadable reply")
        return "".join(parts)
    except (LLMUnavailable, AssistantError):
        raise
    except Exception as exc:
        log.info("language model call failed: %r", exc)
        raise LLMUnavailable(failure_reason(exc, settings)) from exc


def failure_reason(exc: BaseException, settings: Settings) -> str:
    """A short, human reason for a failed call ("timeout after 5 s", "HTTP 500", …)."""
    import httpx
    import openai

    timeout = f"timeout after {settings.llm_timeout:g} s"
    if isinstance(exc, openai.APITimeoutError | httpx.TimeoutException):
        return timeout
    if isinstance(exc, openai.APIConnectionError | httpx.TransportError):
        cause = exc.__cause__ or exc.__context__
        if isinstance(cause, httpx.TimeoutException):
            return timeout
        return f"cannot connect to {api_base(settings.llm_url or '')}"
    if isinstance(exc, openai.APIStatusError):
        hint = {401: ": check ASSISTANT_LLM_API_KEY", 403: ": check ASSISTANT_LLM_API_KEY",
                404: ": check ASSISTANT_LLM_URL and ASSISTANT_LLM_MODEL"}
        return f"HTTP {exc.status_code}{hint.get(exc.status_code, '')}"
    if isinstance(exc, openai.APIError):
        return f"server error: {' '.join(str(exc.message).split())[:80]}"
    return "unreadable reply"


# -- markers and citations ---------------------------------------------------------------------
def clean_markers(text: str, count: int) -> str:
    """``text`` with every marker reduced to the passage numbers 1..count it names.

    ``[7]`` with five passages disappears (with the space before it); ``[1, 7]`` → ``[1]``.
    """

    def keep(m: re.Match[str]) -> str:
        numbers = [int(x) for x in m.group(2).split(",")]
        valid = [str(n) for n in dict.fromkeys(numbers) if 1 <= n <= count]
        return f"{m.group(1)}[{', '.join(valid)}]" if valid else ""

    return _MARKER.sub(keep, text)


class MarkerFilter:
    """Streams model text to ``sink`` with invalid markers already removed.

    Text that may still turn into a marker (a trailing ``[1`` or trailing spaces) is held
    back until it is complete, so what was streamed is exactly ``clean_markers`` of the whole.
    """

    def __init__(self, sink: Callable[[str], None], count: int) -> None:
        self.sink = sink
        self.count = count
        self.raw = ""
        self.sent = 0

    def __call__(self, delta: str) -> None:
        """Take one streamed delta."""
        self.raw += delta
        held = _OPEN_MARKER.search(self.raw)
        cut = held.start() if held else len(self.raw.rstrip())
        self._emit(clean_markers(self.raw[:cut], self.count))

    def close(self) -> str:
        """Flush what was held back; returns the whole cleaned text."""
        text = clean_markers(self.raw, self.count)
        self._emit(text)
        return text

    def _emit(self, clean: str) -> None:
        if len(clean) > self.sent:
            self.sink(clean[self.sent:])
            self.sent = len(clean)


def _content(text: str) -> set[str]:
    return {stem(w) for w, _, _ in words(text) if w.lower() not in STOPWORDS}


def claims(text: str, count: int) -> dict[int, list[set[str]]]:
    """For each passage number cited in ``text``, the content words of the claims citing it.

    A claim is the generated text before the marker, back to the previous marker in the same
    sentence (or the sentence start); a marker opening a sentence belongs to the one before.
    """
    spans = split_sentences(text)
    found: dict[int, list[set[str]]] = {}
    for m in _MARKER.finditer(text):
        pos = m.start(2)
        i = next((k for k, (s, e) in enumerate(spans) if s <= pos < e), None)
        if i is None:
            continue
        s, _ = spans[i]
        prev = [x.end() for x in _MARKER.finditer(text, s, m.start()) if x.end() <= m.start()]
        segment = _content(_MARKER.sub(" ", text[prev[-1] if prev else s:m.start()]))
        if not segment:
            segment = _content(_MARKER.sub(" ", text[s:m.start()]))
        if not segment and i > 0:
            segment = _content(_MARKER.sub(" ", text[spans[i - 1][0]:spans[i - 1][1]]))
        for x in m.group(2).split(","):
            n = int(x)
            if 1 <= n <= count:
                found.setdefault(n, []).append(segment)
    return found


def _passage_text(settings: Settings, p: Passage, cache: dict[str, str]) -> tuple[str, int,
                                                                                 int] | None:
    """The file text and the passage's span in it (None when the file no longer holds it)."""
    if p.path not in cache:
        try:
            cache[p.path] = read_text(Path(settings.corpus) / p.path)
        except Exception:
            cache[p.path] = ""
    text = cache[p.path]
    if text[p.start:p.end] == p.text:
        return text, p.start, p.end
    at = text.find(p.text) if p.text else -1
    return (text, at, at + len(p.text)) if at >= 0 else None


def cite(settings: Settings, text: str, question: str,
         passages: Sequence[Passage]) -> list[Citation]:
    """One citation per passage cited in ``text``: its best-matching sentence, in order of
    first citation. Each quote is exactly ``read_text(file)[start:end]``."""
    cache: dict[str, str] = {}
    asked = _content(question)
    citations = []
    for n, segments in claims(text, len(passages)).items():
        p = passages[n - 1]
        located = _passage_text(settings, p, cache)
        if located is None:
            continue
        file_text, start, end = located
        spans = split_sentences(file_text, start, end) or [(start, end)]
        sentences = [(s, e, _content(file_text[s:e])) for s, e in spans]

        def score(item: tuple[int, int, set[str]], targets: list[set[str]]) -> tuple:
            overlap = max(len(item[2] & t) for t in targets)
            return (overlap, overlap / (len(item[2]) or 1))

        best = max(sentences, key=lambda it: score(it, segments))
        if score(best, segments)[0] == 0:
            best = max(sentences, key=lambda it: score(it, [asked]))
        s, e, _ = best
        citations.append(Citation(n=n, doc_id=p.doc_id, title=p.title, path=p.path, start=s,
                                  end=e, quote=file_text[s:e], score=p.score,
                                  published=p.published, source=p.source))
    return citations


def says_dont_know(text: str) -> bool:
    """True when the model's text says the passages do not answer the question."""
    return bool(_DONT_KNOW.search(text))


# -- the answer --------------------------------------------------------------------------------
def _fallback(extractive: Answer, why: str) -> Answer:
    return replace(extractive, backend="extractive",
                   notice=f"{why}; showing the extractive answer.")


def generate_answer(settings: Settings, question: str, extractive: Answer,
                    on_token: Callable[[str], None] | None = None) -> Answer:
    """The model's cited answer over ``extractive.passages``, or ``extractive`` with a notice.

    ``on_token`` receives the model's text as it streams (invalid markers already removed).
    When the model fails midway, nothing more is streamed: the returned answer (backend
    ``"extractive"``, ``notice`` set) is what to show.
    """
    passages = list(extractive.passages)
    if not passages:
        return replace(extractive, backend="extractive")
    messages = answer_messages(settings, question, passages)
    stream = MarkerFilter(on_token, len(passages)) if on_token is not None else None
    try:
        raw = chat(settings, messages, stream)
    except LLMUnavailable as exc:
        return _fallback(extractive, f"The language model was unavailable ({exc})")
    text = stream.close() if stream is not None else clean_markers(raw, len(passages))
    text = text.strip()
    if not text:
        return _fallback(extractive, "The language model returned an empty answer")
    citations = cite(settings, text, question, passages)
    common = {"question": question, "text": text, "retrieved": list(extractive.retrieved),
              "passages": passages, "backend": "llm"}
    if not citations:
        if says_dont_know(text):
            return Answer(abstained=True, **common)
        return _fallback(extractive, "The language model's answer cited none of the passages")
    short = extractive.short_answer
    if short and short.lower() not in text.lower():
        short = None
    return Answer(short_answer=short, abstained=False, citations=citations, **common)


# -- follow-up questions -----------------------------------------------------------------------
def format_history(history: Sequence[tuple[str, Answer]]) -> str:
    """The previous turn as text for the condensing prompt."""
    if not history:
        return ""
    message, answer = history[-1]
    reply = _MARKER.sub("", answer.text).strip()
    return f"User: {message}\nAssistant: {reply}"


def condense_question(settings: Settings, history_text: str, message: str) -> str:
    """``message`` rewritten by the model as a standalone question, given the previous turn.

    Returns ``message`` unchanged when there is no history or the model fails.
    """
    if not history_text.strip():
        return message
    try:
        reply = chat(settings, condense_messages(settings, history_text, message))
    except LLMUnavailable as exc:
        log.info("condensing the follow-up failed (%s); using it as asked", exc)
        return message
    lines = [ln.strip() for ln in reply.strip().splitlines() if ln.strip()]
    if not lines:
        return message
    rewritten = re.sub(r"^(?:standalone question\s*:\s*)", "", lines[0], flags=re.IGNORECASE)
    rewritten = rewritten.strip().strip("\"“”'").strip()
    if not rewritten or len(rewritten) > settings.max_question_chars:
        return message
    return rewritten
