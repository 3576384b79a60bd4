"""vitc.search against a real, throw-away PostgreSQL server (its own data directory and port, stopped at the end)."""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

optuna = pytest.importorskip("optuna")
from vitc.search import open_storage, redact  # noqa: E402

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(os.path.dirname(HERE))
PG_BIN = next((d for d in sorted(os.listdir("/usr/lib/postgresql"), reverse=True)), None) \
    if os.path.isdir("/usr/lib/postgresql") else None
PG_BIN = os.path.join("/usr/lib/postgresql", PG_BIN, "bin") if PG_BIN else None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_url():
    if PG_BIN is None or not os.path.exists(os.path.join(PG_BIN, "initdb")):
        pytest.skip("PostgreSQL not installed (scripts/setup.sh installs postgresql)")
    pytest.importorskip("psycopg")
    prefix = []
    data = tempfile.mkdtemp(prefix="vitc-pg-")
    if os.getuid() == 0:  # initdb refuses root: run the server as the unprivileged 'postgres' user
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(data, user.pw_uid, user.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    pg_ctl = prefix + [os.path.join(PG_BIN, "pg_ctl"), "-D", data]
    subprocess.run(prefix + [os.path.join(PG_BIN, "initdb"), "-D", data, "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run(pg_ctl + ["-w", "-t", "30", "-l", os.path.join(data, "log"), "-o",
                             f"-p {port} -k {data} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(pg_ctl + ["-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def _worker(url, n, tag, *extra):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.Popen([sys.executable, os.path.join(HERE, "search_worker.py"), url, str(n), str(tag), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _trials(url):
    return optuna.load_study(study_name="toy", storage=url).get_trials(deepcopy=False)


def _drop_study(url):
    try:
        optuna.delete_study(study_name="toy", storage=url)
    except KeyError:
        pass


def test_two_workers_share_one_study(postgres_url):
    _drop_study(postgres_url)
    n = 8
    workers = [_worker(postgres_url, n, tag) for tag in (1, 2)]
    outs = [w.communicate(timeout=120) for w in workers]
    for w, (out, err) in zip(workers, outs):
        assert w.returncode == 0, err
    trials = _trials(postgres_url)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n
    assert len({t.number for t in complete}) == n and len({t.params["x"] for t in complete}) == n
    assert {t.user_attrs["worker"] for t in complete} == {"1", "2"}  # both took part
    assert sum(int(o.split("completed ")[1]) for o, _ in outs) == n


def test_a_killed_workers_trial_fails_and_is_retried(postgres_url):
    _drop_study(postgres_url)
    n = 4
    doomed = _worker(postgres_url, n, 1, "slow-first")
    line = doomed.stdout.readline()
    assert line.startswith("started "), doomed.stderr.read()
    killed_number = int(line.split()[1])
    doomed.send_signal(signal.SIGKILL)
    doomed.communicate(timeout=30)
    out, err = _worker(postgres_url, n, 2).communicate(timeout=120)
    trials = _trials(postgres_url)
    states = {t.number: t.state for t in trials}
    assert states[killed_number] == optuna.trial.TrialState.FAIL, err
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == n
    retried = [t for t in complete if t.system_attrs.get("failed_trial") == killed_number]
    assert len(retried) == 1 and retried[0].params == trials[killed_number].params


def test_unreachable_database_is_a_clear_error():
    pytest.importorskip("psycopg")
    url = f"postgresql://someone:secret@127.0.0.1:{_free_port()}/nothing"
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"cannot open the Optuna storage postgresql://someone:\*\*\*@127"):
        open_storage(url, connect_timeout=5)
    assert time.monotonic() - t0 < 30
    with pytest.raises(ValueError, match="database URL"):
        open_storage("not a url")
    assert redact(url).count("secret") == 0


_OPEN_AT_ONCE = """
import sys, time
from vitc.search import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
open_storage(sys.argv[1])
print("opened")
"""


def test_workers_opening_a_fresh_database_together_all_succeed(postgres_url):
    # the first run of every worker against an empty database creates Optuna's tables at the same time
    import psycopg
    env = dict(os.environ, PYTHONPATH=ROOT)
    for round_ in range(3):
        name = f"fresh{round_}"
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name}")
            conn.execute(f"CREATE DATABASE {name}")
        url = postgres_url.rsplit("/", 1)[0] + "/" + name
        start = time.time() + 3.0  # after every interpreter has imported optuna
        procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AT_ONCE, url, repr(start)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env) for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0 and "opened" in out, err


def test_a_schema_creation_race_is_retried(monkeypatch):
    import sqlalchemy.exc
    real, calls = optuna.storages.RDBStorage, []

    def racing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise sqlalchemy.exc.IntegrityError("CREATE TABLE studies", {}, Exception(
                'duplicate key value violates unique constraint "pg_type_typname_nsp_index"'))
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    assert open_storage("sqlite://") is not None and len(calls) == 2
    calls.clear()
    monkeypatch.setattr(optuna.storages, "RDBStorage", lambda *a, **k: (_ for _ in ()).throw(
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("NOT NULL constraint failed"))))
    with pytest.raises(RuntimeError, match="NOT NULL constraint failed"):  # other integrity errors are not retried
        open_storage("sqlite://")
