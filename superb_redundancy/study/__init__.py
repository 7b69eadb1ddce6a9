"""Studies: one YAML file expanded into runs (similarity -> prune specs -> mimickers -> downstream -> curves),
executed locally or on Slurm through submitit, resumable, ending with the leaderboard."""

from .config import StudyConfig, StudyConfigError
from .plan import Run, expand
from .runner import run_study, study_status

__all__ = ["StudyConfig", "StudyConfigError", "Run", "expand", "run_study", "study_status"]
