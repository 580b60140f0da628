"""The speed benchmark: options, timing and compile counting, the jaxfp
workloads, the input-pipeline row, profile parsing, FLOP counting, and the
run that puts them in one table (`run`). torch is imported only for the
PyTorch column, when it is installed; TensorFlow only for the input-pipeline
row.
"""
