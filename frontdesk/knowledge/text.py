"""Text helpers shared by indexing and answering: terms, a light stemmer, sentences, Markdown.

The stemmer is deliberately small (English plural and verb endings) and only used to measure how
much of a question a passage covers; ranking itself is done by the database's full-text engine.
"""

from __future__ import annotations

import functools
import re

STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    tell please hi hello thanks thank want need know get got let lets use using
    и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне
    было вот от меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него
    до вас нибудь опять уж вам ведь там потом себя ничего ей может они тут где есть надо ней для мы
    тебя их чем была сам чтоб без будто чего раз тоже себе под будет ж тогда кто этот того потому
    этого какой совсем ним здесь этом один почти мой тем чтобы нее сейчас были куда зачем всех
    никогда можно при наконец два об другой хоть после над больше тот через эти нас про всего них
    какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть том нельзя такой
    им более всегда конечно всю между как""".split()
)

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-ZА-ЯЁ0-9`\"'(])")


def words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


# Answering a question stems every word of its candidate passages, and the same passages and
# words come back question after question: the caches below keep that from being most of the
# knowledge responder's CPU. They hold only derived text, bounded by count.
@functools.lru_cache(maxsize=65536)
def stem(word: str) -> str:
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            base = word[: -len(suffix)]
            return base + "y" if suffix in ("ies", "ied") else base
    return word


def query_terms(question: str, limit: int = 12) -> list[str]:
    """Content words of a question, in order, without duplicates."""
    seen: list[str] = []
    for word in words(question):
        if len(word) < 2 or word in STOPWORDS:
            continue
        if word not in seen:
            seen.append(word)
        if len(seen) == limit:
            break
    return seen


@functools.lru_cache(maxsize=8192)
def stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in words(text))


def coverage(terms: list[str], text: str) -> float:
    if not terms:
        return 0.0
    present = stems(text)
    return sum(1 for t in terms if stem(t) in present) / len(terms)


_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]+\)")
_MD_BLOCK_MARK = re.compile(r"^\s*(#{1,6}|>|[*+-]|\d+[.)])\s+")
_MD_INLINE = re.compile(r"[*`|]|(?<!\w)_+|_+(?!\w)")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}")
_SPACES = re.compile(r"[ \t]+")


@functools.lru_cache(maxsize=4096)
def plain_text(markdown: str) -> str:
    """Markdown reduced to prose: one line per paragraph, list item or heading.

    Hard-wrapped lines are joined, code blocks dropped (also a block cut off by the end of a
    chunk), links reduced to their text, and emphasis marks removed while identifiers such as
    `min_coverage` keep their underscores.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    in_fence = False

    def flush() -> None:
        if current:
            paragraphs.append(_SPACES.sub(" ", " ".join(current)).strip())
            current.clear()

    for raw in markdown.splitlines():
        if raw.strip().startswith("```"):
            in_fence = not in_fence
            flush()
            continue
        if in_fence or _TABLE_RULE.match(raw):
            continue
        if not raw.strip():
            flush()
            continue
        if _MD_BLOCK_MARK.match(raw):
            flush()
        line = _MD_INLINE.sub("", _MD_LINK.sub(r"\1", _MD_BLOCK_MARK.sub("", raw))).strip()
        if line:
            current.append(line)
    flush()
    return "\n".join(p for p in paragraphs if p)


def sentences(text: str) -> list[str]:
    out: list[str] = []
    for paragraph in text.split("\n"):
        for sentence in _SENTENCE_END.split(paragraph):
            sentence = sentence.strip()
            if len(sentence) >= 12:
                out.append(sentence)
    return out
