"""Labels from contexts: what a trained feature's strongest activations have in common, said in
words. Made by `train-sae` from each feature's top activations with the text around them (the
same windows the examples file keeps), or from a committed examples file alone
(``labels_from_examples``; `playground relabel-sae`).

Candidate patterns, each scored by the share of the feature's activations it names:
- the tokens themselves (up to three, most frequent first: "room / hall / house");
- a token class, when the tokens share one: numbers, punctuation, line breaks and spaces,
  initials, place names, names and title-case words, ALL-CAPS words, word endings ("-ing");
- the word just before ("after “the”");
- a common word of the windows ("near “sea”": in most windows, not the token itself).

The label is the best pattern when it names at least half of the activations, with the common
context word added when there is one (so that a label search finds "sea" on a feature about
waves); otherwise the two strongest patterns joined ("numbers · after “chapter”"), never the
old "mixed: ...". Each label keeps its patterns, so its precision on held-out text is measured
by what it says (``Label.names``).
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.demo.label_words import CLASSES, STOPWORDS, same_word, token_display, token_key
from engine.sae.sidecars import EXAMPLES_FILENAME, LABELS_FILENAME

MIN_HITS = 3  # a feature active fewer times gets no label
MAX_NAMES = 3
STRONG = 0.8  # a pattern naming this share of the activations labels alone
WEAK = 0.25  # activations under this share of the feature's strongest are left out
NAME_SHARE = 0.1  # a token named in a tokens pattern carries at least this share
CONTEXT_SHARE = 0.4  # a context word in at least 40 % of the windows is mentioned
MIN_SUFFIX = 2
COMMON_SHARE = 0.01  # a word around more than 1 % of the features is no feature's context


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
    kind: str  # tokens | class | suffix | before | context
    words: str  # how the label says it
    test: Callable[[Sequence[str], int], bool] = field(compare=False)

    def names(self, tokens: Sequence[str], index: int) -> bool:
        return self.test(tokens, index)


@dataclass(frozen=True)
class Label:
    text: str  # what labels.json holds
    keys: frozenset[str]  # the normalised tokens it names (a tokens pattern's)
    patterns: tuple[Pattern, ...] = ()

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
    names = [k for k in ranked[:MAX_NAMES] if weights[k] >= NAME_SHARE * total] or ranked[:1]
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


def _before_pattern(hits: Sequence[Hit]) -> Pattern | None:
    before = [token_key(h.tokens[h.index - 1]) for h in hits if h.index > 0]
    if not before:
        return None
    key, _ = collections.Counter(before).most_common(1)[0]
    if not key.strip() or not any(c.isalnum() for c in key):
        return None
    return Pattern(
        "before",
        f"after “{key}”",
        lambda tokens, i: i > 0 and token_key(tokens[i - 1]) == key,
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


def make_label(hits: Sequence[Hit], common: frozenset[str] = frozenset()) -> Label | None:
    """The label of a feature from its activations, strongest first (see the module doc).
    ``common``: words too frequent around every feature to say anything (``common_words``)."""
    if len(hits) < MIN_HITS:
        return None
    peak = max(h.activation for h in hits)
    hits = [h for h in hits if h.activation >= WEAK * peak]
    tokens, token_keys = _tokens_pattern(hits)
    candidates = [tokens, *_class_patterns(hits)]
    for extra in (_suffix_pattern(hits), _before_pattern(hits)):
        if extra is not None:
            candidates.append(extra)
    # Ranked by how much they name; a class or word ending says more than a list of tokens
    # naming as much, so it wins ties.
    order = {"class": 0, "suffix": 1, "tokens": 2, "before": 3}
    scored = sorted(
        ((_weighted_share(hits, p), p) for p in candidates),
        key=lambda item: (-round(item[0], 2), order[item[1].kind]),
    )
    context = _context_pattern(hits, common)
    best_share, best = scored[0]
    if best_share >= STRONG:
        chosen = [best]
        text = best.words
    else:
        second = next((p for s, p in scored[1:] if s > 0 and p.kind != best.kind), None)
        chosen = [best] if second is None else [best, second]
        text = " · ".join(p.words for p in chosen)
    if context is not None and context[1] >= CONTEXT_SHARE:
        chosen.append(context[0])
        text = f"{text} · {context[0].words}"
    keys = token_keys if tokens in chosen else frozenset()
    return Label(text=text, keys=keys, patterns=tuple(chosen))


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


def relabel_from_examples(sae_dir: Path) -> int:
    """Rewrite an SAE folder's labels.json from its examples file alone (the weights are not
    read): how the committed demo SAE's labels were made. Returns how many features it labels."""
    lines = (sae_dir / EXAMPLES_FILENAME).read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines[1:] if line.strip()]  # after the header
    labels = labels_from_examples(records)
    write_labels(sae_dir / LABELS_FILENAME, labels)
    return len(labels)


def write_labels(path: Path, labels: dict[int, Label]) -> None:
    """labels.json: each labelled feature's text by its id (train-sae's and relabelling's)."""
    text = json.dumps({str(f): label.text for f, label in sorted(labels.items())}, indent=0)
    path.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m engine.demo.labels <sae folder>
    import sys

    folder = Path(sys.argv[1])
    print(f"{relabel_from_examples(folder)} labels written to {folder / LABELS_FILENAME}")
