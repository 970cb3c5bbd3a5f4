"""The fault pipeline's helpers: dropping ops that never started, quieting the pool's log."""

from __future__ import annotations

import logging

from experiments.history import History, Op
from experiments.pipeline import quiet_pool_log
from experiments.runner import NOT_STARTED


def test_discard_drops_only_the_ops_selected() -> None:
    history = History()
    history.extend(
        [
            Op(0, 0, "claim", "c", result="ok"),
            Op(1, 0, "claim", "c", result="unknown", message=NOT_STARTED),
            Op(2, 1, "get", "c", result="unavailable", message="timed out"),
        ]
    )
    assert history.discard(lambda o: o.message == NOT_STARTED) == 1
    assert [o.op_id for o in history] == [0, 2]
    assert history.discard(lambda o: o.message == NOT_STARTED) == 0


def test_quiet_pool_log_raises_the_level_and_restores_it() -> None:
    logger = logging.getLogger("psycopg.pool")
    before = logger.level
    logger.setLevel(logging.INFO)
    try:
        with quiet_pool_log():
            assert not logger.isEnabledFor(logging.WARNING)
            assert logger.isEnabledFor(logging.ERROR)
        assert logger.level == logging.INFO
    finally:
        logger.setLevel(before)
