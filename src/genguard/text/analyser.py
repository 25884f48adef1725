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
from genguard.text.lexicon import Lexicon
from genguard.text.normalize import Normalised, normalize
from genguard.text.persons import PersonRegistry
from genguard.text.semantic import Encoder, SemanticChecker, semantic_score

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
                    self._lexicon = Lexicon(self._lexicon_dirs)
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

    def analyse(self, text: str, *, semantic_threshold: float = 0.6) -> PromptSignals:
        """Analyse one prompt; raises :class:`ContentError` for unusable input."""
        norm = self._validate(text)
        signals = self._lexical(norm)
        if self.semantic:
            self._add_semantic([signals], [(0, norm)], semantic_threshold)
        return signals

    def analyse_many(
        self, texts: Sequence[str], *, semantic_threshold: float = 0.6
    ) -> list[PromptSignals | ContentError]:
        """Analyse prompts in order; the semantic pass runs batched over the good ones.

        A bad prompt yields its :class:`ContentError` in place and does not stop the batch.
        """
        results: list[PromptSignals | ContentError] = []
        pending: list[tuple[int, Normalised]] = []
        for text in texts:
            try:
                norm = self._validate(text)
            except ContentError as exc:
                results.append(exc)
                continue
            results.append(self._lexical(norm))
            pending.append((len(results) - 1, norm))
        if self.semantic and pending:
            self._add_semantic(results, pending, semantic_threshold)
        return results

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
        matches, notes = self.lexicon.find(norm)
        if len(self.persons):
            matches.extend(self.persons.find(norm))
        return PromptSignals(
            categories=self._scores(matches), matches=matches, notes=[*norm.notes, *notes]
        )

    def _scores(self, matches: Sequence[Match]) -> dict[str, float]:
        scores = dict.fromkeys(self._categories, 0.0)
        if not matches:
            return scores
        weights: dict[str, list[float]] = {}
        for m in matches:
            weights.setdefault(m.category, []).append(m.score)
        for category, values in weights.items():
            scores[category] = round(combine(values), 6)
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
            best: dict[str, Match] = {}
            for _, start, end in prompt_units:
                for category, hit in next(nearest).items():
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
