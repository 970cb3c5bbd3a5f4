"""``python -m experiments.bench``: the HTTP load generator's process (JSON in, JSON out)."""

from __future__ import annotations

from experiments.bench._loads import http_load_child

if __name__ == "__main__":
    http_load_child()
