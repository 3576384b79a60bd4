"""vitc.search: Optuna studies shared by worker processes on one or many machines.

One machine keeps the embedded defaults (an SQLite file, or in memory). Several machines point every
worker at one relational database (e.g. ``postgresql://user@host:5432/db``, Optuna's RDBStorage):
the database hands out trial numbers, so no two workers run the same trial. Each running trial sends a
heartbeat; a trial whose worker was killed stops beating, is marked FAIL by the next worker that looks
(after ``grace_period`` s) and re-queued with the same parameters (Optuna's
RetryHeartbeatStaleTrialCallback), so another worker runs it again. ``optimize_shared`` runs until the
study holds ``n_trials`` complete trials, whichever workers finished them.
"""
import re
import time
import warnings

__all__ = ["open_storage", "optimize_shared", "redact", "study_record"]


def redact(url):
    """``url`` with its password hidden (for messages and logs)."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", str(url))


def _optuna():
    try:
        import optuna
    except ImportError:
        raise RuntimeError("vitc.search needs Optuna: pip install 'vitc[experiments]'") from None
    return optuna


_SCHEMA_ATTEMPTS = 5


def _schema_race(error):
    text = str(getattr(error, "orig", None) or error)
    return "already exists" in text or "duplicate key" in text


def open_storage(url=None, heartbeat_interval=10, grace_period=60, max_retry=3, connect_timeout=10):
    """An Optuna storage for ``url``: None -> in-memory (one process); ``sqlite:///path`` or any
    SQLAlchemy database URL (``postgresql://...``) -> RDBStorage with heartbeats and retry of the
    trials of dead workers. An unreachable server raises RuntimeError after ``connect_timeout`` s
    (PostgreSQL, MySQL), naming the URL; a missing driver raises RuntimeError naming the package."""
    optuna = _optuna()
    if url is None:
        return None
    if not isinstance(url, str) or "://" not in url:
        raise ValueError(f"storage must be a database URL such as sqlite:///study.db or "
                         f"postgresql://user@host:5432/db, got {url!r}")
    for name, v in (("heartbeat_interval", heartbeat_interval), ("grace_period", grace_period)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"open_storage: {name} must be an int >= 1 (seconds), got {v!r}")
    if grace_period <= heartbeat_interval:
        raise ValueError(f"open_storage: grace_period ({grace_period} s) must exceed heartbeat_interval "
                         f"({heartbeat_interval} s), or live trials are failed")
    engine_kwargs = {"pool_pre_ping": True}
    if url.startswith(("postgresql", "mysql")):
        engine_kwargs["connect_args"] = {"connect_timeout": int(connect_timeout)}
    try:
        import sqlalchemy.exc
        for attempt in range(_SCHEMA_ATTEMPTS):
            try:
                with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna 5
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    return optuna.storages.RDBStorage(
                        url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
                        grace_period=grace_period,
                        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                            max_retry=max_retry))
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as e:
                # Workers started together on a fresh database all create Optuna's tables; PostgreSQL's
                # CREATE TABLE is not idempotent under that race ("duplicate key value violates unique
                # constraint pg_type_typname_nsp_index"). The loser retries and finds the tables made.
                if attempt + 1 == _SCHEMA_ATTEMPTS or not _schema_race(e):
                    raise
                time.sleep(0.2 * (attempt + 1))
    except ImportError as e:
        driver = "psycopg[binary]" if url.startswith("postgresql") else "the database driver"
        raise RuntimeError(f"storage {redact(url)}: {e}; install {driver} (pip install 'vitc[distributed]')") from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        cause = getattr(e, "orig", None) or e
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise RuntimeError(f"cannot open the Optuna storage {redact(url)}: {first}") from None


def _count(trials, states):
    return sum(t.state in states for t in trials)


def optimize_shared(study, objective, n_trials, poll=2.0, log=None):
    """Run trials of ``study`` until it has ``n_trials`` COMPLETE trials, sharing the work with any other
    worker running this on the same study. Waits (checking for dead workers' trials every ``poll`` s)
    while the missing trials are running elsewhere. A trial started when the others already fill the
    remaining slots (a race at the very end) is marked PRUNED with user attribute ``surplus`` and not
    run. Returns the number of trials this worker completed."""
    optuna = _optuna()
    TS = optuna.trial.TrialState
    mine = []

    def guarded(trial):
        before = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
        if _count(before, (TS.COMPLETE, TS.RUNNING, TS.WAITING)) >= n_trials:
            trial.set_user_attr("surplus", True)
            study.stop()
            raise optuna.TrialPruned("the study's other trials already fill it")
        value = objective(trial)
        mine.append(trial.number)
        return value

    def enough(study_, frozen):
        if _count(study_.get_trials(deepcopy=False), (TS.COMPLETE,)) >= n_trials:
            study_.stop()

    while True:
        with warnings.catch_warnings():  # marked experimental in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: FAIL, then re-queued as WAITING
        trials = study.get_trials(deepcopy=False)
        complete = _count(trials, (TS.COMPLETE,))
        if complete >= n_trials:
            return len(mine)
        if _count(trials, (TS.WAITING,)) or complete + _count(trials, (TS.RUNNING,)) < n_trials:
            study.optimize(guarded, callbacks=[enough])
        else:
            if log:
                log(f"waiting for the running trials of other workers ({complete}/{n_trials} complete)")
            time.sleep(poll)


def study_record(url, prefix=""):
    """What the database holds of every study whose name starts with ``prefix``, for the record of a
    shared search: ``{name: {"counts": {state: n}, "distinct_numbers", "distinct_params", "best",
    "trials": [...]}}``, trials in number order with state, value, params, user attributes and times.
    ``distinct_params`` counts the distinct parameter sets among COMPLETE trials (two workers drawing
    the same point shows up as fewer than COMPLETE). Raises RuntimeError (unreachable database, see
    open_storage) or ValueError (no study with that prefix)."""
    optuna = _optuna()
    if url is None:
        raise ValueError("study_record needs the storage URL the workers shared (an in-memory study has no record)")
    storage = open_storage(url)
    names = sorted(s.study_name for s in optuna.study.get_all_study_summaries(storage, include_best_trial=False)
                   if s.study_name.startswith(prefix))
    if not names:
        raise ValueError(f"no study named {prefix}* in {redact(url)}")
    out = {}
    for name in names:
        trials = sorted(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False),
                        key=lambda t: t.number)
        rows = [{"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                 "user_attrs": dict(t.user_attrs),
                 "start": str(t.datetime_start) if t.datetime_start else None,
                 "end": str(t.datetime_complete) if t.datetime_complete else None} for t in trials]
        complete = [r for r in rows if r["state"] == "COMPLETE"]
        counts = {}
        for r in rows:
            counts[r["state"]] = counts.get(r["state"], 0) + 1
        best = max(complete, key=lambda r: r["value"]) if complete else None
        out[name] = {"counts": counts, "distinct_numbers": len({r["number"] for r in complete}),
                     "distinct_params": len({tuple(sorted(r["params"].items())) for r in complete}),
                     "best": best and {"number": best["number"], "value": best["value"], "params": best["params"]},
                     "trials": rows}
    return out
