"""The README's "Writing a strategy" example, exactly as written, and variants of it
(broken, looking ahead) for the tests that run them from files outside the repo."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
REF_NAME = "Bollinger"


def readme_example() -> str:
    """The first python block of the README section "Writing a strategy"."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Writing a strategy", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README: no python example under 'Writing a strategy'"
    return match.group(1)


def write_example(folder: Path, name: str = "bollinger.py") -> str:
    """Save the example in ``folder``; returns its reference ``name:Bollinger``."""
    (folder / name).write_text(readme_example(), encoding="utf-8")
    return f"{name}:{REF_NAME}"


# A vectorised batch that centres its moving average: the textbook look-ahead.
LOOK_AHEAD_BATCH = """

import pandas as pd


def _centred_batch(open_, high, low, close, params):
    closes = pd.Series(close)
    mid = closes.rolling(params.window, center=True).mean()
    std = closes.rolling(params.window, center=True).std(ddof=0)
    lower = mid - params.k * std
    signal = (closes < lower).astype("int8").to_numpy()
    return signal, {"bb_mid": mid.to_numpy(), "bb_lower": lower.to_numpy()}


Bollinger = dataclasses.replace(Bollinger, batch=_centred_batch)
"""


def write_variant(folder: Path, name: str, kind: str) -> str:
    """A broken or look-ahead variant of the example; returns its reference."""
    code = readme_example()
    if kind == "look_ahead":
        code = "import dataclasses\n" + code + LOOK_AHEAD_BATCH
    elif kind == "import_error":
        code = "import no_such_module_hedgeflow\n" + code
    elif kind == "raises":
        code = code.replace(
            "    window = int(p[0])\n",
            "    window = int(p[0])\n    if close > 0:\n        raise ValueError('boom')\n",
        )
    elif kind == "bad_return":
        code = code.replace("    return 1 if long else 0\n", "    return 2\n")
    elif kind == "no_compile":
        code = code.replace(
            "    lower = mid - p[1] * std\n", "    lower = mid - p[1] * std + undefined_name\n"
        )
    elif kind == "not_a_strategy":
        code += "\nBollinger = 42\n"
    else:  # pragma: no cover - a test typo
        raise ValueError(kind)
    assert code != readme_example()
    (folder / name).write_text(code, encoding="utf-8")
    return f"{name}:{REF_NAME}"
