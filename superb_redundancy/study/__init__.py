"""Studies: one YAML file expanded into runs (similarity -> prune specs -> mimickers -> downstream -> curves),
executed locally or on Slurm through submitit, resumable, ending with the leaderboard."""

from superb_redundancy.study.config import StudyConfig
from superb_redundancy.study.plan import Run, expand
from superb_redundancy.study.runner import run_study, study_status
from superb_redundancy.study.sections import StudyConfigError

__all__ = ["StudyConfig", "StudyConfigError", "Run", "expand", "run_study", "study_status"]
