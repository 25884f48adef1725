"""Prompt analysis: normalise, match words/names/ages, compare meanings, score categories.

This is the contract with the core: :class:`PromptAnalyser` turns a prompt into
:class:`PromptSignals` (a score per prompt category, the evidence, and what normalisation
undid). It does not decide anything: the core's ``Guard.check_prompt`` applies the
policy's thresholds, actions and hard rules to these signals.

Scores: each piece of evidence has a weight (lexicon weight, fuzzy-name score, semantic
score); a category's score is their noisy OR, ``1 - prod(1 - w)``, so two weak hints
("sexy", "lingerie") add up while one strong term already gives ~1.0. Semantic scores are
0.5 at the semantic threshold and rise to 1.0 (see :func:`semantic_score`).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from genguard.decision import Match
from genguard.errors import ContentError
from genguard.taxonomy import categories
from genguard.text.decode import (
    View,
    negated_phrases,
    payload_views,
    read_view,
    transformed_readings,
    upside_down_view,
)
from genguard.text.lexicon import ADULT, CLOTHING, Lexicon
from genguard.text.normalize import Normalised, normalize, normalize_view
from genguard.text.persons import PersonRegistry
from genguard.text.semantic import Encoder, SemanticChecker, semantic_score

#: Categories scored by their best single piece of evidence instead of a noisy OR.
MAX_CATEGORIES = frozenset({"real_person"})
#: Youth cues weaker than this ("girl" 0.15, "petite" 0.2, "school uniform" 0.35, "jeune
#: fille" 0.7) are discounted when the prompt states the person is an adult; a stated age
#: under 18, "child", "teen" (0.9) or "loli" are not.
STRONG_MINOR = 0.9
#: A semantic hit in a category an allow-list phrase vouches for counts only from here.
VOUCHED_PROBABILITY = 0.9
#: A negative prompt's clothing score that counts as a nudity request.
NEGATION_MIN = 0.5

#: Default longest prompt accepted, in characters (the policy's ``[prompt] max_chars``).
#: Generators truncate far below this (CLIP reads 77 tokens); anything longer is abuse or
#: a mistake, and refusing it early keeps the per-prompt cost bounded.
DEFAULT_MAX_CHARS = 4000


@dataclass
class PromptSignals:
    """What the analyser found in one prompt."""

    categories: dict[str, float]  # every prompt category, score in [0, 1]
    matches: list[Match] = field(default_factory=list)  # evidence, quoting the original
    notes: list[str] = field(default_factory=list)  # what normalisation undid

    def flagged(self, threshold: float = 0.5) -> list[str]:
        """Categories at or above ``threshold`` (a convenience for tests and tools)."""
        return sorted(c for c, s in self.categories.items() if s >= threshold)


def _clothing_match(matches: Sequence[Match], text: str, offset: int | None) -> Match | None:
    """``sexual`` evidence when a negative prompt (``offset`` None) or a negatively weighted
    phrase of the prompt (``(clothes:-1)``, at ``offset``) lists clothes or censoring.

    The noisy OR of the clothing words' weights (``clothing.*.txt``: "clothes" 0.8, "bra"
    0.45, "swimsuit" 0.3, "censored" 0.6) becomes the evidence when it reaches 0.5; the
    match quotes the text it was read in.
    """
    clothing = _strongest([m for m in matches if m.category == CLOTHING])
    score = combine([m.score for m in clothing])
    if score < NEGATION_MIN:
        return None
    start = min(m.start for m in clothing)
    end = max(m.end for m in clothing)
    where = "negative prompt" if offset is None else "negatively weighted phrase"
    shift = offset or 0
    return Match(
        category="sexual",
        term=f"clothes in a {where}: " + ", ".join(m.term for m in clothing),
        start=start + shift,
        end=end + shift,
        quote=text[start:end],
        score=round(score, 6),
        source="negative_prompt" if offset is None else "negative_weight",
        field="negative_prompt" if offset is None else "prompt",
    )


def _strongest(matches: Sequence[Match]) -> list[Match]:
    """One match per (category, term): several readings of the prompt may find the same
    term, and a repeated word ("sexy sexy") is not more evidence than one. A lexicon term
    inside a stronger phrase of the same category counts through the phrase only."""
    kept: list[Match] = []
    for m in sorted(matches, key=lambda m: (-m.score, m.start - m.end, m.start)):
        if any(k.category == m.category and k.term == m.term for k in kept):
            continue  # the same term again (another reading, or repeated) adds nothing
        if m.source == "lexicon" and any(
            k.category == m.category
            and k.source == "lexicon"
            and k.field == m.field
            and k.start <= m.start
            and m.end <= k.end
            and (k.start, k.end) != (m.start, m.end)
            for k in kept
        ):
            continue  # "lingerie" inside "in lingerie": the phrase already weighs it
        kept.append(m)
    return sorted(kept, key=lambda m: (m.start, m.end, m.category))


def prompt_categories() -> list[str]:
    return [c.name for c in categories("prompt")]


def combine(weights: Sequence[float]) -> float:
    """Noisy OR of evidence weights in [0, 1]."""
    return 1.0 - math.prod(1.0 - min(max(w, 0.0), 1.0) for w in weights)


class PromptAnalyser:
    """Prompt -> :class:`PromptSignals`. Build once, reuse; thread-safe after first use.

    ``semantic=False`` skips the MiniLM model entirely (nothing heavy is imported).
    ``persons=None`` uses the built-in example registry; pass
    ``PersonRegistry(builtin=False)`` for none, or ``PersonRegistry.from_store(store)``.
    """

    def __init__(
        self,
        *,
        semantic: bool = True,
        persons: PersonRegistry | None = None,
        lexicon_dirs: Sequence[Path] = (),
        max_chars: int = DEFAULT_MAX_CHARS,
        exemplar_dirs: Sequence[Path] = (),
        encoder: Encoder | None = None,
    ) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be positive")
        self.semantic = semantic
        self.max_chars = max_chars
        self._lexicon_dirs = [Path(d) for d in lexicon_dirs]
        self._exemplar_dirs = [Path(d) for d in exemplar_dirs]
        self._encoder = encoder
        self._lexicon: Lexicon | None = None
        self._persons = persons
        self._semantic: SemanticChecker | None = None
        self._categories = prompt_categories()
        self._init_lock = threading.Lock()

    # -- lazily built parts ----------------------------------------------------------------

    @property
    def lexicon(self) -> Lexicon:
        if self._lexicon is None:
            with self._init_lock:
                if self._lexicon is None:
                    self._lexicon = (
                        Lexicon(self._lexicon_dirs) if self._lexicon_dirs else Lexicon.default()
                    )
        return self._lexicon

    @property
    def persons(self) -> PersonRegistry:
        if self._persons is None:
            self._persons = PersonRegistry()
        return self._persons

    @property
    def semantic_checker(self) -> SemanticChecker:
        """The MiniLM checker (loads the model on first use; ModelUnavailableError if absent)."""
        with self._init_lock:  # the gateway's threads must not load the model twice
            if self._semantic is None:
                self._semantic = SemanticChecker(self._encoder, exemplar_dirs=self._exemplar_dirs)
        return self._semantic

    # -- public API ------------------------------------------------------------------------

    def analyse(
        self,
        text: str,
        *,
        semantic_threshold: float = 0.6,
        negative_prompt: str | None = None,
    ) -> PromptSignals:
        """Analyse one prompt; raises :class:`ContentError` for unusable input.

        ``negative_prompt`` never counts as a request, except that a list of clothes there
        asks the model for nudity (see :meth:`read_negative`).
        """
        (result,) = self.analyse_many(
            [text], semantic_threshold=semantic_threshold, negative_prompts=[negative_prompt]
        )
        if isinstance(result, ContentError):
            raise result
        return result

    def analyse_many(
        self,
        texts: Sequence[str],
        *,
        semantic_threshold: float = 0.6,
        negative_prompts: Sequence[str | None] | None = None,
    ) -> list[PromptSignals | ContentError]:
        """Analyse prompts in order; the semantic pass runs batched over the good ones.

        A bad prompt yields its :class:`ContentError` in place and does not stop the batch.
        """
        negatives = list(negative_prompts) if negative_prompts is not None else [None] * len(texts)
        if len(negatives) != len(texts):
            raise ValueError("negative_prompts must have one entry per prompt")
        results: list[PromptSignals | ContentError] = []
        pending: list[tuple[int, Normalised]] = []
        for text, negative in zip(texts, negatives, strict=True):
            try:
                norm = self._validate(text)
            except ContentError as exc:
                results.append(exc)
                continue
            signals = self._lexical(norm)
            if negative:
                match, notes = self.read_negative(negative)
                self._add_negation(signals, match)
                signals.notes.extend(notes)
            if "-" in text:
                for offset, phrase in negated_phrases(text):
                    matches, _ = self.lexicon.find(normalize(phrase))
                    self._add_negation(signals, _clothing_match(matches, phrase, offset))
            results.append(signals)
            pending.append((len(results) - 1, norm))
        if self.semantic and pending:
            self._add_semantic(results, pending, semantic_threshold)
        return results

    def read_negative(self, negative_prompt: str) -> tuple[Match | None, list[str]]:
        """One pass over a negative prompt: (nudity evidence, notes).

        What it names ("nude, child") is a safety measure and only noted. A list of clothes
        or censoring is the exception: "a woman standing in a field" with the negative
        prompt "clothes, dress, bra" asks for a nude image (see :func:`_clothing_match`).
        """
        try:
            norm = self._validate(negative_prompt)
        except ContentError as exc:
            return None, [f"negative prompt not checked: {exc}"]
        matches, _ = self.lexicon.find(norm)
        if len(self.persons):
            matches.extend(self.persons.find(norm))
        named = self._scores([m for m in matches if m.category != "suggestive"])
        flagged = sorted(k for k, v in named.items() if v >= 0.5)
        notes = (
            [f"negative prompt mentions {', '.join(flagged)}: treated as a safety measure"]
            if flagged
            else []
        )
        return _clothing_match(matches, negative_prompt, None), notes

    def _add_negation(self, signals: PromptSignals, match: Match | None) -> None:
        if match is not None:
            signals.matches.append(match)
            signals.categories = self._scores(signals.matches)
            signals.notes.append(f"{match.term.split(':')[0]}: read as a nudity request")

    # -- steps -----------------------------------------------------------------------------

    def _validate(self, text: object) -> Normalised:
        if not isinstance(text, str):
            raise ContentError(
                f"a prompt must be text, not {type(text).__name__}", code="bad_prompt"
            )
        if len(text) > self.max_chars:
            raise ContentError(
                f"prompt is {len(text)} characters, over the limit of {self.max_chars} "
                "(policy [prompt] max_chars)",
                code="prompt_too_long",
            )
        if not text.strip():
            raise ContentError("prompt is empty", code="empty_prompt")
        norm = normalize(text)
        if not norm.text.strip():
            raise ContentError(
                "prompt is empty once invisible and control characters are removed",
                code="empty_prompt",
            )
        return norm

    def _lexical(self, norm: Normalised) -> PromptSignals:
        """Lexicon, age rules and persons on the prompt and on each decoded reading of it."""
        matches, notes = self._match(norm)
        notes = [*norm.notes, *notes]
        for view in self._readings(norm.original):
            view_norm = normalize_view(view.text, norm.original, view.starts, view.ends)
            found, view_notes = self._match(view_norm)
            if found:
                matches.extend(found)
                notes.append(f"{view.how}: {len(found)} match(es)")
                notes.extend(n for n in view_notes if n not in notes)
        kept = _strongest(matches)
        return PromptSignals(categories=self._scores(kept), matches=kept, notes=notes)

    def _match(self, norm: Normalised) -> tuple[list[Match], list[str]]:
        matches, notes = self.lexicon.find(norm)
        matches = [m for m in matches if m.category != CLOTHING]
        if any(m.category == ADULT for m in matches):
            weak = [m for m in matches if m.category == "minor" and m.score < STRONG_MINOR]
            if weak:
                notes.append(
                    f"adult evidence outweighs {len(weak)} weak youth cue(s): "
                    + ", ".join(repr(m.quote) for m in weak)
                )
                matches = [m for m in matches if m not in weak]
        matches = [m for m in matches if m.category != ADULT]
        if len(self.persons):
            matches.extend(self.persons.find(norm))
        return matches, notes

    def _readings(self, text: str) -> list[View]:
        """Decoded readings of the prompt (front-end syntax, markup, payloads, flips)."""
        views: list[View] = []
        read = read_view(text)
        if read is not None:
            views.append(read)
        payloads = payload_views(View.of(text))
        if read is not None and ("markup" in read.how or "percent" in read.how):
            seen = {p.text for p in payloads}
            payloads.extend(p for p in payload_views(read) if p.text not in seen)
        views.extend(payloads)
        source = read or View.of(text)
        flipped = upside_down_view(text)
        if flipped is not None:
            views.append(flipped)
        views.extend(transformed_readings(source.text, self.lexicon.strong_english_words))
        return views

    def _scores(self, matches: Sequence[Match]) -> dict[str, float]:
        """Noisy OR per category; ``real_person`` is the best single name (two
        half-sure names are not one sure person)."""
        scores = dict.fromkeys(self._categories, 0.0)
        if not matches:
            return scores
        weights: dict[str, list[float]] = {}
        for m in matches:
            if m.category in scores:
                weights.setdefault(m.category, []).append(m.score)
        for category, values in weights.items():
            value = max(values) if category in MAX_CATEGORIES else combine(values)
            scores[category] = round(value, 6)
        return scores

    def _add_semantic(
        self,
        results: list[PromptSignals | ContentError],
        pending: list[tuple[int, Normalised]],
        threshold: float,
    ) -> None:
        """One batched embedding call for every unit of every prompt, then best per category."""
        units = [semantic_units(norm) for _, norm in pending]
        flat = [text for prompt_units in units for text, _, _ in prompt_units]
        nearest = iter(self.semantic_checker.nearest(flat))
        for (index, norm), prompt_units in zip(pending, units, strict=True):
            signals = results[index]
            assert isinstance(signals, PromptSignals)
            vouched = self.lexicon.allowed_categories(norm)
            best: dict[str, Match] = {}
            for _, start, end in prompt_units:
                for category, hit in next(nearest).items():
                    if category in vouched and hit.probability < VOUCHED_PROBABILITY:
                        continue  # "nude heels", "blood orange": the allow list knows better
                    score = semantic_score(hit, threshold)
                    if score > 0.0 and (category not in best or score > best[category].score):
                        best[category] = Match(
                            category=category,
                            term=hit.exemplar,
                            start=start,
                            end=end,
                            quote=norm.original[start:end],
                            score=score,
                            source="semantic",
                        )
            if best:
                signals.matches.extend(best.values())
                signals.categories = self._scores(signals.matches)


#: Clause boundaries for the semantic check (image prompts are often comma-separated tags).
_CLAUSE_RE = re.compile(r"[^,;.!?|()\[\]{}<>:\s][^,;.!?|()\[\]{}<>:\n]*")
#: A clause needs this many words to be embedded on its own (single words are the
#: lexicon's job, and a lone tag like "8k" has no meaning worth comparing).
MIN_CLAUSE_WORDS = 3
#: At most this many units per prompt are embedded; later clauses are grouped.
MAX_UNITS = 16


def semantic_units(norm: Normalised) -> list[tuple[str, int, int]]:
    """Texts to embed for one prompt, each with its span in the original prompt.

    Why: a tag-list prompt ("masterpiece, best quality, 8k, <request>, bokeh") dilutes the
    one clause that matters; embedded whole, a clear paraphrase drops from cosine 0.86 to
    0.34. So the whole prompt is one unit and every clause of 3+ words is another, and the
    best unit per category wins (its span is the quoted evidence). Beyond
    :data:`MAX_UNITS`, the remaining clauses are embedded in groups to bound the cost.
    """
    whole = " ".join(norm.text.split())
    units = [(whole, 0, len(norm.original))]
    clauses = []
    for m in _CLAUSE_RE.finditer(norm.text):
        words = m.group().split()
        if len(words) >= MIN_CLAUSE_WORDS:
            start, end = norm.span(m.start(), m.start() + len(m.group().rstrip()))
            clauses.append((" ".join(words), start, end))
    if not clauses or (len(clauses) == 1 and clauses[0][0] == whole):
        return units
    room = MAX_UNITS - 1
    if len(clauses) > room:
        size = -(-len(clauses) // room)  # ceil: group neighbours so all clauses are seen
        clauses = [
            (
                ", ".join(c[0] for c in clauses[i : i + size]),
                clauses[i][1],
                clauses[min(i + size, len(clauses)) - 1][2],
            )
            for i in range(0, len(clauses), size)
        ]
    units.extend(clauses)
    return units
