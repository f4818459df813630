"""The EODHD token: from the environment or a Prefect Secret block, never a parameter."""

from __future__ import annotations

import os
from typing import Any

from hedgeflow.config import TOKEN_ENV, NetworkSettings
from hedgeflow.errors import ConfigError
from hedgeflow.secrets import register_secret


def eodhd_token(network: NetworkSettings) -> str:
    token = os.environ.get(TOKEN_ENV)
    if not token:
        try:
            from prefect.blocks.system import Secret

            block: Any = Secret.load(network.token_secret_block)
            token = str(block.get())
        except Exception:
            token = None
    if not token:
        raise ConfigError(
            TOKEN_ENV,
            f"no EODHD API token: set {TOKEN_ENV} or save a Prefect Secret block named "
            f"{network.token_secret_block!r}",
        )
    register_secret(token)
    return token
