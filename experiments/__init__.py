"""The chaos lab: experiments that judge the coupon service, in Jepsen's words.

A docstring only: importing ``experiments`` imports nothing else (its modules import
each other one way; ``tests/experiments/test_layering.py`` holds that).

    word          module           what it is
    ------------  ---------------  ------------------------------------------------------
    RunSpec       spec             every parameter of one run: the common ones (seed,
                                   layer, strategy, database or target, timeouts,
                                   cleanup, pool size) with one set of defaults, plus the
                                   workload's own figures, each within its ``Range``
    Plan          plans            the operations to run (``PlannedOp``), drawn from a
                                   seed before anything starts: the generator
    Op, History   history          one record per operation: invoke and complete time,
                                   kind, coupon, user, result kind, HTTP status; its
                                   outcome ``ok``, ``fail`` or ``unknown`` (it may have
                                   happened)
    client        clients          performs an Op through a layer, never raising for its
                                   outcome; an HTTP answer is judged by ``contract``
    layer         spec.LAYERS      the client's door: ``service`` (in-process) or
                                   ``http`` (the API served on loopback)
    strategy      coupon_core      how a claim is made atomic, by name
                  .strategies,     (``row_lock``, ``atomic``, ...), or a bug the lab
                  mutants          plants (``mutant:lost_update``, ...)
    runner        runner           the plan's workers as threads, released together
    fault         faults           the nemesis: start, stop, and the windows it was on
    lab           lab              the one context that starts and always stops
                                   databases, servers, clusters and proxies
    Workload      pipeline         a scenario's partial spec: plan, faults,
                                   expectations, what it needs of the lab
    pipeline      pipeline         ``run(spec, workload) -> Result``, as named steps:
                                   provision, set up, drive, read, check, validity (the
                                   one redraw), record
    Run           pipeline         one attempt, as the workload's callbacks see it
    check         checks           a named judgement of the history and the final tables
                                   (also ``linearizability``, ``elle``, ``checks_leaks``)
    Verdict       result           a check's answer: passed True, False, or None
                                   (unknown, never a pass), or skipped with its reason
    Result        result           what a run returns: history, verdicts, attempts,
                                   summary
    status        result           a run's one word, decided once (``status_of``):
                                   ``pass``, ``FAIL``, ``unknown``, ``no_experiment``
                                   (only a validity check failed: it tested nothing),
                                   ``skipped``
    finding       findings         the anomaly a known-unsafe configuration must show,
                                   excusing only the failures its evidence explains
    scenario      scenarios        one module declaring its partial spec, registered by
                                   name: ``scenarios.run(name, **params) -> Result``
    LabError      errors           the lab's one error tree, mapped to exit codes by
                                   ``cli.EXIT_CODES``

Around them: ``suite`` (the notebooks headless, judged, rendered), ``report`` (the
charts), ``sweep`` (distributions over seeds), ``detection`` (the matrix of mutants
and scenarios), ``locust`` (load from Locust processes), ``commands`` and ``cli``
(the ``coupon-chaos`` command line). ``docs/architecture.md`` follows one claim
through all of them, and ``docs/lab.md`` says which file to change to add a
scenario, a fault or a check.
"""
