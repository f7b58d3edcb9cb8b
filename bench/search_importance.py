"""Which settings mattered in a pruned sweep: Optuna's fANOVA over every trial's first dev
evaluation, not only the finished trials.

`mtcli compare` reports Optuna's parameter importances, which count finished trials only; under
ASHA most trials are pruned at their first rung, so a 20-trial search may leave 4 finished
trials to explain 12 parameters. Every trial that reached an evaluation has one near the first
rung (the same number of examples a batch slot, give or take an epoch's end), so this script
asks fANOVA about those values: the trials rebuilt as finished ones with their first
evaluation as their value, in an in-memory study. fANOVA is a random forest: its importances
are given as the mean and range over --forests seeds. Then, per choice parameter, the mean first
evaluation of each choice (how many trials had it).

    python bench/search_importance.py runs/sweeps/quality-search
    python bench/search_importance.py bench/results/quality-search --forests 10
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna  # noqa: E402
from optuna.distributions import CategoricalDistribution  # noqa: E402
from optuna.importance import FanovaImportanceEvaluator, get_param_importances  # noqa: E402

from mtcli.sweep.study import STUDY, journal  # noqa: E402


def first_evaluations(folder: Path) -> list[optuna.trial.FrozenTrial]:
    """The sweep's trials that reached a dev evaluation, as finished trials valued at their first."""
    study = optuna.load_study(study_name=STUDY, storage=journal(folder))   # reads; create_study would append
    rebuilt = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state.name == "FAIL" or not trial.intermediate_values:
            continue   # interrupted: its continuation is a trial of its own
        seen, value = min(trial.intermediate_values.items())
        rebuilt.append(optuna.trial.create_trial(params=trial.params, distributions=trial.distributions,
                                                 value=value, user_attrs={"number": trial.number, "seen": seen}))
    return rebuilt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a sweep folder (holding study.journal)")
    parser.add_argument("--forests", type=int, default=5, help="fANOVA seeds to average over")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    if not (args.folder / "study.journal").is_file():
        sys.exit(f"search_importance: error: {args.folder}: no study.journal; name a sweep folder")
    trials = first_evaluations(args.folder)
    if len(trials) < 2:
        sys.exit(f"search_importance: error: {args.folder}: fewer than 2 trials reached a dev evaluation")
    seen = sorted(t.user_attrs["seen"] for t in trials)
    study = optuna.create_study(direction="maximize")
    study.add_trials(trials)

    runs = [get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=s)) for s in range(args.forests)]
    print(f"{len(trials)} trials' first dev evaluations ({seen[0]}-{seen[-1]} examples a batch slot); "
          f"fANOVA over {args.forests} forest seeds\n")
    print("| parameter | importance (mean) | range |\n|---|---|---|")
    names = sorted(runs[0], key=lambda k: -statistics.mean(r[k] for r in runs))
    for name in names:
        values = [r[name] for r in runs]
        print(f"| {name} | {statistics.mean(values):.2f} | {min(values):.2f}-{max(values):.2f} |")

    print("\n| parameter | choice | trials | mean first evaluation | best |\n|---|---|---|---|---|")
    for name, distribution in trials[0].distributions.items():
        if not isinstance(distribution, CategoricalDistribution):
            continue
        for choice in distribution.choices:
            scores = [t.value for t in trials if t.params.get(name) == choice]
            if scores:
                print(f"| {name} | {choice} | {len(scores)} | {statistics.mean(scores):.4f} | {max(scores):.4f} |")


if __name__ == "__main__":
    main()
