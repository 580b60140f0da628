"""Tools on top of the trainer, each behind the command of its name
(`python -m jaxfp.<name>`; `curves` behind `plot_curves`): evaluate,
reference, sweep, robustness, answers, embeddings, curves."""
