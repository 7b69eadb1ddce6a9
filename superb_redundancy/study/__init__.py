"""Studies: one YAML file expanded into runs (similarity -> prune specs -> mimickers -> downstream -> curves),
executed locally or on Slurm through submitit, resumable, ending with the leaderboard."""
