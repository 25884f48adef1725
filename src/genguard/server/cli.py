"""CLI commands of genguard.server (registered on the main app by genguard.cli).

``genguard serve --config genguard.toml`` runs the gateway under uvicorn;
``genguard keys create|list|revoke`` manage API keys in the same database.
"""

from __future__ import annotations

import logging.config
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from genguard.server.auth import KeyStore
    from genguard.server.config import GatewayConfig

console = Console()
err_console = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="gateway TOML config (default: ./genguard.toml if any)"),
]

keys_app = typer.Typer(help="Manage the gateway's API keys.", no_args_is_help=True)


def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="override server.host")] = None,
    port: Annotated[int | None, typer.Option(help="override server.port")] = None,
) -> None:
    """Run the HTTP gateway (moderation, guarded generation, review page)."""
    from genguard.errors import MissingExtraError

    try:
        import uvicorn

        from genguard.server.app import create_app
    except ImportError as exc:
        raise MissingExtraError(exc.name or "fastapi", "gateway", "The HTTP gateway") from None
    from genguard.server.config import load_config
    from genguard.server.connections import uvicorn_options
    from genguard.server.logs import log_config

    settings = load_config(config)
    logging_config = log_config(settings.server.log_level)
    logging.config.dictConfig(logging_config)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        log_config=logging_config,
        access_log=False,  # the gateway logs each request itself, as JSON
        server_header=False,
        # uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and replace the
        # socket peer; the gateway decides that itself (server.trusted_proxies).
        proxy_headers=False,
        # Connection cap, header/keep-alive timeouts, graceful shutdown (server.*).
        **uvicorn_options(settings.server),
    )


def _key_store(config: Path | None) -> tuple[GatewayConfig, KeyStore]:
    """The config and a key store on its database (imports kept out of CLI start-up)."""
    from genguard.server import models  # noqa: F401  (declares the tables)
    from genguard.server.auth import KeyStore
    from genguard.server.config import load_config
    from genguard.store import open_store

    settings = load_config(config)
    return settings, KeyStore(open_store(settings.store.database()))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", "-n", help="who uses the key (shown in logs)")],
    policy: Annotated[str | None, typer.Option(help="policy name (default: the config's)")] = None,
    rate: Annotated[
        str | None, typer.Option(help="rate limit such as 60/min, 10/s or 'unlimited'")
    ] = None,
    config: ConfigOption = None,
) -> None:
    """Create a key and print it once: only its hash is stored."""
    from genguard.errors import ConfigError

    settings, store = _key_store(config)
    policy = policy or settings.policies.default
    if policy not in settings.policies.profiles:
        raise ConfigError(
            f"policy {policy!r} is not served by this gateway; configured: "
            f"{', '.join(sorted(settings.policies.profiles))}"
        )
    key, secret = store.create(name, policy, rate or settings.limits.default_rate)
    store.store.close()
    err_console.print(
        f"created key [bold]{key.name}[/bold] (policy {key.policy}, rate {key.rate}); "
        "it is shown once, store it now:"
    )
    print(secret)


@keys_app.command("list")
def keys_list(
    config: ConfigOption = None,
    all_keys: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
) -> None:
    """List keys (names, prefixes, policies, rates; never the secrets)."""
    _settings, store = _key_store(config)
    keys = store.list(include_revoked=all_keys)
    store.store.close()
    table = Table("name", "prefix", "policy", "rate", "created", "status")
    for key in keys:
        table.add_row(
            key.name,
            key.prefix + "…",
            key.policy,
            str(key.rate),
            key.created_at.strftime("%Y-%m-%d %H:%M"),
            "revoked" if key.revoked else "active",
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    name: Annotated[str, typer.Argument(help="name of the key to revoke")],
    config: ConfigOption = None,
) -> None:
    """Revoke a key at once: the next request with it gets 401."""
    _settings, store = _key_store(config)
    key = store.revoke(name)
    store.store.close()
    err_console.print(f"revoked key [bold]{key.name}[/bold]")


def register(app: typer.Typer) -> None:
    """Add this subsystem's commands to the main `genguard` app."""
    app.command("serve")(serve)
    app.add_typer(keys_app, name="keys")
