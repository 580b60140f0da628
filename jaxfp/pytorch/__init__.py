"""Everything of jaxfp that imports torch: the published PyTorch networks
(`networks`), the weight converter (`convert`) and the benchmark's PyTorch
column (`bench_column`). Nothing outside imports it except the `convert_torch`
command and, lazily when torch is installed, `jaxfp.bench`.
"""
