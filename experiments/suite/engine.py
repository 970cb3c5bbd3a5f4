"""The suite's papermill engine: papermill's own (nbclient), with two differences.

- It runs a notebook on a kernel it is handed (``km=``, one of ``WarmKernels``) and owns
  it: nbclient shuts it down afterwards, immediately, as one it had started.
- It writes the executed notebook when the notebook ends (papermill's
  ``notebook_complete``, in a ``finally``: also after a dead kernel or a stop), and
  after a cell only when the last write is ``autosave_cell_every`` old, not after
  every cell: each write validates and serialises the whole notebook, its charts
  included (17 ms for a 218 kB notebook, measured), and a notebook of the suite has
  about 30 cells. Nothing reads the file while the notebook runs.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

__all__ = ["ENGINE", "register"]

#: The name the suite gives papermill (``engine_name=``).
ENGINE = "coupon_chaos"

_lock = threading.Lock()


def register() -> str:
    """Register ``ENGINE`` with papermill (once); returns its name."""
    from papermill.engines import papermill_engines

    with _lock:
        if papermill_engines._engines.get(ENGINE) is None:
            papermill_engines.register(ENGINE, _engine())
    return ENGINE


def _engine() -> type[Any]:
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, NotebookExecutionManager
    from papermill.utils import merge_kwargs, remove_args

    class SparseSaves(NotebookExecutionManager):  # type: ignore[misc]
        _ending = False

        def save(self, **kwargs: Any) -> None:
            age = (self.now() - self.last_save_time).total_seconds()
            if self._ending or age >= self.autosave_cell_every:
                super().save(**kwargs)

        def notebook_complete(self, **kwargs: Any) -> None:
            self._ending = True
            super().notebook_complete(**kwargs)

    class OwningClient(PapermillNotebookClient):  # type: ignore[misc]
        def __init__(self, nb_man: Any, km: Any = None, **kw: Any) -> None:
            super().__init__(nb_man, km=km, **kw)
            # A kernel handed over is this notebook's alone: nbclient ends it afterwards.
            self.owns_km = True

    class SuiteEngine(NBClientEngine):  # type: ignore[misc]
        @classmethod
        def execute_notebook(
            cls,
            nb: Any,
            kernel_name: str,
            output_path: str | None = None,
            progress_bar: bool = True,
            log_output: bool = False,
            autosave_cell_every: int = 30,
            **kwargs: Any,
        ) -> Any:
            # papermill's Engine.execute_notebook, with SparseSaves for its manager.
            nb_man = SparseSaves(
                nb,
                output_path=output_path,
                progress_bar=progress_bar,
                log_output=log_output,
                autosave_cell_every=autosave_cell_every,
            )
            nb_man.notebook_start()
            try:
                cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
            finally:
                nb_man.cleanup_pbar()
                nb_man.notebook_complete()
            return nb_man.nb

        @classmethod
        def execute_managed_notebook(
            cls,
            nb_man: Any,
            kernel_name: str,
            log_output: bool = False,
            stdout_file: Any = None,
            stderr_file: Any = None,
            start_timeout: int = 60,
            execution_timeout: int | None = None,
            **kwargs: Any,
        ) -> Any:
            # papermill's NBClientEngine.execute_managed_notebook, with OwningClient.
            kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
            final = merge_kwargs(
                kwargs,
                timeout=execution_timeout,
                startup_timeout=start_timeout,
                kernel_name=kernel_name,
                log=logging.getLogger("papermill"),
                log_output=log_output,
                stdout_file=stdout_file,
                stderr_file=stderr_file,
            )
            return OwningClient(nb_man, **final).execute()

    return SuiteEngine
