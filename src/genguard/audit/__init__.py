"""Model audit: how often does a checkpoint produce flagged images from innocent prompts?

:func:`run_audit` generates every model x prompt x seed (cached in SQLite, resumable),
classifies each image with an :class:`ImageClassifier` (the image Guard by default), and
:func:`write_report` turns the result into ``report.json`` and a self-contained
``index.html`` with Wilson 95% intervals and two-proportion comparisons. See docs/audit.md.
"""

from genguard.audit.classify import (
    CLASSIFIERS,
    GuardClassifier,
    ImageClassifier,
    Verdict,
    create_classifier,
    register_classifier,
)
from genguard.audit.report import summarize, write_report
from genguard.audit.runner import AuditResult, AuditSample, pixelate, run_audit
from genguard.audit.stats import proportion, two_proportion_test, wilson_interval
from genguard.audit.suites import Prompt, PromptSuite, builtin_suites, load_suite
from genguard.generators import (
    GENERATORS,
    GenerationSettings,
    ImageGenerator,
    create_generator,
    register_generator,
)
from genguard.generators.local import DiffusersGenerator, FakeGenerator

__all__ = [
    "CLASSIFIERS",
    "GENERATORS",
    "AuditResult",
    "AuditSample",
    "DiffusersGenerator",
    "FakeGenerator",
    "GenerationSettings",
    "GuardClassifier",
    "ImageClassifier",
    "ImageGenerator",
    "Prompt",
    "PromptSuite",
    "Verdict",
    "builtin_suites",
    "create_classifier",
    "create_generator",
    "load_suite",
    "pixelate",
    "proportion",
    "register_classifier",
    "register_generator",
    "run_audit",
    "summarize",
    "two_proportion_test",
    "wilson_interval",
    "write_report",
]
