"""Labels from contexts: what a trained feature's strongest activations have in common, said in
words. Made by `train-sae` from each feature's top activations with the text around them (the
same windows the examples file keeps), or from a committed examples file alone
(``labels_from_examples``; ``python -m engine.demo.labels <folder>``).

A label names, in this order:
- the tokens that fire (case and leading space aside; up to four, strongest first, each at
  least 5 % of the activation: "room / hall / house"; "ask" also names "asked");
- the token class they share, when one names at least 30 % of the activation: numbers,
  punctuation, line breaks and spaces, initials, place names, names and title-case words,
  ALL-CAPS words, a word ending ("-ing"); a class naming 80 % labels alone ("numbers (7, 3)");
- a word most of the windows share ("near “sea”": in 40 % of them, not the token itself), so a
  label search finds "sea" on a feature about waves.

A feature is *labelled* only when its contexts agree: the strongest token of every context is
one word (case, leading space and word forms aside), or they all share a token class (not a
word ending), or the class names 60 % of the activation. Otherwise its text says so,
"diverse: a / b / c / d", and it is not judged: label precision (``label_precision``) averages
over labelled features only, and the share of features labelled is reported beside it. Each
label keeps its patterns, so its precision on held-out text is measured by what it says
(``Label.names``).
"""

from __future__ import annotations

import collections
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.demo.label_words import CLASSES, STOPWORDS, same_word, token_display, token_key

MIN_HITS = 3  # a feature active fewer times gets no label
MAX_NAMES = 4
STRONG = 0.8  # a class naming this share of the activations labels alone
CLASS_SHARE = 0.3  # a class naming this share is added to the tokens
AGREE_SHARE = 0.6  # a class naming this share makes the contexts agree
WEAK = 0.25  # activations under this share of the feature's strongest are left out
NAME_SHARE = 0.05  # a token named in a tokens pattern carries at least this share
CONTEXT_SHARE = 0.4  # a context word in at least 40 % of the windows is mentioned
MIN_SUFFIX = 2
COMMON_SHARE = 0.01  # a word around more than 1 % of the features is no feature's context
DIVERSE = "diverse: "


@dataclass(frozen=True)
class Hit:
    """One activation of a feature: the tokens around it and where it is among them."""

    tokens: Sequence[str]
    index: int
    activation: float
    window: int = 0  # which context it came from (hits of one window count it once)

    @property
    def token(self) -> str:
        return self.tokens[self.index]


@dataclass(frozen=True)
class Pattern:
    kind: str  # tokens | class | suffix | context
    words: str  # how the label says it
    test: Callable[[Sequence[str], int], bool] = field(compare=False)

    def names(self, tokens: Sequence[str], index: int) -> bool:
        return self.test(tokens, index)


@dataclass(frozen=True)
class Label:
    text: str  # what labels.json holds
    keys: frozenset[str]  # the normalised tokens it names (a tokens pattern's)
    patterns: tuple[Pattern, ...] = ()
    diverse: bool = False  # its contexts do not agree: not a label, not judged

    def names(self, tokens: Sequence[str], index: int) -> bool:
        """Whether the label says what this activation is (the precision measure's test)."""
        if self.patterns:
            return any(p.names(tokens, index) for p in self.patterns)
        return token_key(tokens[index]) in self.keys


_SPACE_WORDS = "line breaks and spaces"
_WORD = re.compile(r"[A-Za-z]{3,}")


def _class_test(test: Callable[[str], bool]) -> Callable[[Sequence[str], int], bool]:
    return lambda tokens, i: test(tokens[i].strip())


def _space_test(tokens: Sequence[str], i: int) -> bool:
    return not tokens[i].strip()


def _examples(hits: Sequence[Hit], test: Callable[[str], bool], n: int = 3) -> str:
    seen: list[str] = []
    for hit in hits:
        shown = token_display(hit.token)
        if test(hit.token.strip()) and shown not in seen:
            seen.append(shown)
        if len(seen) == n:
            break
    return ", ".join(seen)


def _weighted_share(hits: Sequence[Hit], pattern: Pattern) -> float:
    total = sum(h.activation for h in hits) or 1.0
    return sum(h.activation for h in hits if pattern.names(h.tokens, h.index)) / total


def _tokens_pattern(hits: Sequence[Hit]) -> tuple[Pattern, frozenset[str]]:
    weights: dict[str, float] = collections.defaultdict(float)
    first_seen: dict[str, str] = {}
    for h in hits:
        weights[token_key(h.token)] += h.activation
        first_seen.setdefault(token_key(h.token), h.token)
    total = sum(weights.values()) or 1.0
    ranked = sorted(weights, key=lambda key: -weights[key])  # stable: strength breaks ties
    names = ranked[:1] + [k for k in ranked[1:MAX_NAMES] if weights[k] >= NAME_SHARE * total]
    keys = frozenset(names)
    pattern = Pattern(
        "tokens",
        " / ".join(token_display(first_seen[key]) for key in names),
        lambda tokens, i: any(same_word(token_key(tokens[i]), k) for k in keys),
    )
    return pattern, keys


def _class_patterns(hits: Sequence[Hit]) -> list[Pattern]:
    out = [Pattern("class", _SPACE_WORDS, _space_test)]
    for words, test in CLASSES:
        examples = _examples(hits, test)
        out.append(
            Pattern("class", f"{words} ({examples})" if examples else words, _class_test(test))
        )
    return out


def _suffix_pattern(hits: Sequence[Hit]) -> Pattern | None:
    words = [h.token.strip().lower() for h in hits if h.token.strip().isalpha()]
    if len(set(words)) < 2:
        return None
    best: tuple[int, str] | None = None
    for size in (4, 3, MIN_SUFFIX):
        counts = collections.Counter(w[-size:] for w in words if len(w) > size)
        if counts:
            suffix, n = counts.most_common(1)[0]
            distinct = {w for w in words if w.endswith(suffix)}
            if len(distinct) >= 2 and (best is None or n > best[0]):
                best = (n, suffix)
    if best is None:
        return None
    suffix = best[1]
    return Pattern(
        "suffix",
        f"words ending “-{suffix}”",
        lambda tokens, i: (
            tokens[i].strip().lower().endswith(suffix) and len(tokens[i].strip()) > len(suffix)
        ),
    )


def _window_words(tokens: Sequence[str], index: int) -> set[str]:
    """The words of a window but its own token's (tokens glued into text: "S" "ea" is "sea")."""
    text = "".join(t for j, t in enumerate(tokens) if j != index)
    return {w.lower() for w in _WORD.findall(text)} - STOPWORDS


def _context_pattern(
    hits: Sequence[Hit], common: frozenset[str] = frozenset()
) -> tuple[Pattern, float] | None:
    """The words most of the windows share (not the tokens themselves): up to two, each in
    at least CONTEXT_SHARE of them; the share is the first's."""
    windows: dict[int, set[str]] = {}
    for h in hits:
        windows.setdefault(h.window, set()).update(_window_words(h.tokens, h.index))
    if len(windows) < 2:
        return None
    counts = collections.Counter(w for words in windows.values() for w in words)
    own = {token_key(h.token) for h in hits}
    ranked = [(n, w) for w, n in counts.items() if w not in own and w not in common]
    if not ranked:
        return None
    ranked.sort(key=lambda item: (-item[0], -len(item[1]), item[1]))
    words = [w for n, w in ranked[:2] if n >= CONTEXT_SHARE * len(windows)] or [ranked[0][1]]
    pattern = Pattern(
        "context",
        "near " + ", ".join(f"“{w}”" for w in words),
        lambda tokens, i: bool(_window_words(tokens, i) & set(words)),
    )
    return pattern, ranked[0][0] / len(windows)


def _strongest_per_window(hits: Sequence[Hit]) -> list[Hit]:
    best: dict[int, Hit] = {}
    for h in hits:
        if h.window not in best or h.activation > best[h.window].activation:
            best[h.window] = h
    return list(best.values())


def _agreed(hits: Sequence[Hit], class_share: float) -> bool:
    """Whether the contexts agree: the strongest token of each is one word, or they share a
    class, or the best class names AGREE_SHARE of the activation. A shared word ending is not
    enough (on the demo SAE such labels named about half of the held-out activations)."""
    if class_share >= AGREE_SHARE:
        return True
    tops = [h.token for h in _strongest_per_window(hits)]
    first = token_key(tops[0])
    if all(same_word(token_key(t), first) for t in tops):
        return True
    if all(not t.strip() for t in tops):
        return True
    return any(all(test(t.strip()) for t in tops) for _, test in CLASSES)


def make_label(hits: Sequence[Hit], common: frozenset[str] = frozenset()) -> Label | None:
    """The label of a feature from its activations, strongest first (see the module doc).
    ``common``: words too frequent around every feature to say anything (``common_words``)."""
    if len(hits) < MIN_HITS:
        return None
    peak = max(h.activation for h in hits)
    hits = [h for h in hits if h.activation >= WEAK * peak]
    tokens, token_keys = _tokens_pattern(hits)
    # The class naming most; on a tie the first (most specific) one.
    classes = [(_weighted_share(hits, p), p) for p in _class_patterns(hits)]
    suffix = _suffix_pattern(hits)
    agreed = _agreed(hits, max(share for share, _ in classes))
    if suffix is not None:
        classes.append((_weighted_share(hits, suffix), suffix))
    class_share, cls = max(classes, key=lambda item: round(item[0], 2))
    if class_share >= STRONG:
        # The class says it; its tokens are still named, and shown when the class misses one.
        chosen = [cls, tokens]
        misses = any(
            not cls.names(h.tokens, h.index) for h in hits if token_key(h.token) in token_keys
        )
        shown = list(chosen) if misses else [cls]
    else:
        chosen = [tokens, cls] if class_share >= CLASS_SHARE else [tokens]
        shown = list(chosen)
    context = _context_pattern(hits, common)
    if context is not None and context[1] >= CONTEXT_SHARE:
        chosen.append(context[0])
        shown = [*shown, context[0]]
    text = " · ".join(p.words for p in shown)
    if not agreed:
        return Label(DIVERSE + text, token_keys, tuple(chosen), diverse=True)
    return Label(text, token_keys, tuple(chosen))


def hits_from_examples(examples: Sequence[dict]) -> list[Hit]:
    """A feature's activations in its examples-file contexts: every position of every window
    where it fired, strongest first."""
    hits = []
    for n, example in enumerate(examples):
        tokens = [str(t) for t in example["tokens"]]
        for i, value in enumerate(example["activations"]):
            if value is not None and value > 0:
                hits.append(Hit(tokens, i, float(value), window=n))
    return sorted(hits, key=lambda h: -h.activation)


def common_words(hits_by_feature: Sequence[Sequence[Hit]]) -> frozenset[str]:
    """Words in the contexts of more than COMMON_SHARE of the features: a context word must
    tell a feature apart (a fortune repeated across the corpus puts "horses" near hundreds)."""
    spread: collections.Counter[str] = collections.Counter()
    for hits in hits_by_feature:
        spread.update(set().union(*(_window_words(h.tokens, h.index) for h in hits)))
    limit = COMMON_SHARE * max(1, len(hits_by_feature))
    return frozenset(w for w, n in spread.items() if n > limit)


def labels_from_examples(records: Sequence[dict]) -> dict[int, Label]:
    """Labels for every feature of an examples file's records (``{feature_id, examples}``)."""
    hits_by_feature = [hits_from_examples(record["examples"]) for record in records]
    common = common_words(hits_by_feature)
    labels = {}
    for record, hits in zip(records, hits_by_feature, strict=True):
        label = make_label(hits, common)
        if label is not None:
            labels[int(record["feature_id"])] = label
    return labels
