"""Tools on top of the trainer: evaluating a checkpoint (`evaluate`), sweeps
of runs (`sweep`), robustness to perturbations (`robustness`), training
curves of several runs (`curves`)."""
