"""Config loading and the shared services (Guards per policy, real detectors shared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from genguard.errors import ConfigError
from genguard.server.config import GatewayConfig, load_config
from genguard.server.services import GuardRegistry


def test_defaults_and_a_full_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    defaults = load_config(None)  # no ./genguard.toml: defaults
    assert (defaults.server.host, defaults.server.port) == ("127.0.0.1", 8787)
    assert defaults.store.database() == str(Path("genguard-data") / "genguard.db")
    assert set(defaults.policies.profiles) == {"strict", "standard", "adult", "off"}
    (tmp_path / "genguard.toml").write_text(
        """
[server]
port = 9000
[store]
url = "postgresql+psycopg://u@db/genguard"
[policies]
default = "shop"
profiles = { shop = "strict" }
[generator]
backend = "a1111"
options = { url = "http://gpu:7860" }
[watermark]
enabled = true
payload = "my-service"
"""
    )
    config = load_config(None)
    assert config.server.port == 9000 and config.policies.default == "shop"
    assert config.store.database().startswith("postgresql")
    assert config.generator.options == {"url": "http://gpu:7860"}
    monkeypatch.setenv("GENGUARD_ADMIN_TOKEN", "from-env")
    assert config.admin_token() == "from-env"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'x'", "server.port"),
        ("[server]\nbogus = 1", "bogus"),
        ("[policies]\ndefault = 'nope'", "policies.default 'nope'"),
        ("[policies]\nprofiles = {}", "at least one policy"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_real_guards_share_one_set_of_detectors(photos: dict[str, Path]) -> None:
    registry = GuardRegistry(
        {"standard": "standard", "strict": "strict"}, backends=["nudenet", "opennsfw"], threads=1
    )
    standard, strict = registry.get("standard"), registry.get("strict")
    assert standard is registry.get("standard")  # created once
    assert all(a is b for a, b in zip(standard.detectors, strict.detectors, strict=True))
    assert standard.policy_id.startswith("standard@") and strict.policy_id.startswith("strict@")
    for name in ("coffee", "rocket"):
        assert standard.check_image(photos[name]).action.value == "allow"
    with pytest.raises(ConfigError, match="not served"):
        registry.get("adult")


def test_config_objects_are_frozen() -> None:
    config = GatewayConfig()
    with pytest.raises(ValueError, match="frozen"):
        config.server.port = 1  # type: ignore[misc]


@pytest.mark.slow  # builds the persons index (~4 s)
def test_prompt_analysers_are_shared_and_know_the_stores_persons(tmp_path: Path) -> None:
    pytest.importorskip("genguard.text.analyser")
    from genguard.store import open_store
    from genguard.text.persons import add_person

    store = open_store(tmp_path / "db.sqlite")
    add_person(store, "Ada Quillfeather", ["A. Quillfeather"])
    lexical = tmp_path / "lexical.toml"
    lexical.write_text('extends = "standard"\n[prompt]\nsemantic = false\n')
    strict = tmp_path / "lexical-strict.toml"
    strict.write_text('extends = "strict"\n[prompt]\nsemantic = false\n')
    registry = GuardRegistry(
        {"a": str(lexical), "b": str(strict)}, backends=[], threads=1, store=store
    )
    first, second = registry.get("a"), registry.get("b")
    assert first.prompt_analyser is second.prompt_analyser
    decision = first.check_prompt("a watercolour portrait of Ada Quillfeather reading")
    assert decision.categories["real_person"] >= 0.5
    assert first.check_prompt("a watercolour of a lighthouse").categories["real_person"] < 0.5
    store.close()


def test_fair_queue_serves_tenants_in_turn() -> None:
    from genguard.server.services import FairQueue

    queue = FairQueue()
    served: list[str] = []
    for i in range(5):
        queue.put("burst", lambda i=i: served.append(f"burst{i}"))
    queue.put("quiet", lambda: served.append("quiet0"))
    queue.put("other", lambda: served.append("other0"))
    queue.put("quiet", lambda: served.append("quiet1"))
    while (task := queue.take()) is not None:
        task()
    # Keys that were idle go first, then one job per key in turn: the quiet keys never
    # wait behind the whole burst.
    assert served == [
        "other0",
        "quiet0",
        "burst0",
        "quiet1",
        "burst1",
        "burst2",
        "burst3",
        "burst4",
    ]


def test_a_backlog_of_one_key_does_not_delay_another(harness_factory) -> None:
    """One worker, a key with 6 slow jobs queued: another key's job runs second, not seventh."""
    import asyncio
    import threading
    import time

    from genguard.server.metrics import GatewayMetrics
    from genguard.server.services import JobRunner

    runner = JobRunner(workers=1, max_queue=20, timeout_s=10, metrics=GatewayMetrics())
    order: list[str] = []
    lock = threading.Lock()

    def work(name: str) -> str:
        time.sleep(0.05)
        with lock:
            order.append(name)
        return name

    async def main() -> None:
        burst = [asyncio.create_task(runner.run(work, f"b{i}", tenant="burst")) for i in range(6)]
        await asyncio.sleep(0.01)  # the burst is queued first
        quiet = asyncio.create_task(runner.run(work, "q", tenant="quiet"))
        assert await quiet == "q"
        await asyncio.gather(*burst)

    asyncio.run(main())
    runner.shutdown()
    assert order.index("q") <= 1 and sorted(order) == ["b0", "b1", "b2", "b3", "b4", "b5", "q"]
