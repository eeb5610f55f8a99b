"""Running the stages: the pipeline of rounds, its checks before any work, checkpoints, results,
resume, the run folder, and the entry points' error handling (Lightning and Hydra live here)."""
