"""The speed benchmark (docs/performance.md), one table by `run`. torch is
imported only for the PyTorch column, when it is installed; TensorFlow only
for the input-pipeline row.
"""
