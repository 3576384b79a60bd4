"""One search worker (run as a separate process by tests/distributed/test_search_postgres.py): joins
study 'toy' at the storage URL and runs vitc.search.optimize_shared on a cheap objective."""
import os
import sys
import time

import optuna

from vitc.search import open_storage, optimize_shared


def main(url, n_trials, tag, slow_first):
    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    study = optuna.create_study(study_name="toy", storage=storage, load_if_exists=True,
                                sampler=optuna.samplers.RandomSampler(seed=int(tag)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = [True]

    def objective(trial):
        x = trial.suggest_float("x", -3, 3)
        trial.set_user_attr("worker", tag)
        if first[0] and slow_first:
            first[0] = False
            print(f"started {trial.number}", flush=True)
            time.sleep(600)  # the test kills this worker here
        time.sleep(0.2)
        return (x - 1) ** 2

    done = optimize_shared(study, objective, n_trials, poll=0.5)
    print(f"worker {tag} pid {os.getpid()} completed {done}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], len(sys.argv) > 4 and sys.argv[4] == "slow-first")
