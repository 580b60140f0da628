"""The base layer: what every other layer may use, and which uses none.

schema (ground-truth tables), spectrum (gray image, magnitude spectrum,
low-frequency window), normalization (the published input scaling),
published (the published sigmoid outputs of the parsing heads), distributed
(multi-host start-up, the pmap axis), preemption (SIGTERM), console
(verbosity, progress, errors), files (whole-file writes, output checks),
lock (one trainer per workdir).
"""
