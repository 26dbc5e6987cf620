"""Redaction's cost by text length: it runs in the inbound webhook, so it must be linear and,
with PROXY_MAX_TEXT_LENGTH, bounded.

    DJANGO_SETTINGS_MODULE=bench.settings .venv/bin/python bench/redaction.py
"""

from __future__ import annotations

import time

import django

django.setup()

from smsproxy.common.redaction import text_redact_numbers  # noqa: E402

SAMPLES = {
    "chat with one number": "Running late, call me on 07700 900123. Gate code 4412. ",
    "numbers only (worst case)": "07700900123 ",
    "spaced digits": "1 ",
}
LENGTHS = (160, 1600, 6400, 39000)


def main() -> None:
    print("| text | " + " | ".join(f"{n} chars" for n in LENGTHS) + " |")
    print("|---|" + "---|" * len(LENGTHS))
    for name, unit in SAMPLES.items():
        cells = []
        for length in LENGTHS:
            text = (unit * (length // len(unit) + 1))[:length]
            best = min(_timed(text) for _ in range(3))
            cells.append(f"{best * 1000:.1f} ms")
        print(f"| {name} | " + " | ".join(cells) + " |")


def _timed(text: str) -> float:
    started = time.perf_counter()
    text_redact_numbers(text=text, region="GB")
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
