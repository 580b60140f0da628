"""Everything of jaxfp that imports torch (docs/layout.md). Nothing outside
imports it except the `convert_torch` command and, lazily when torch is
installed, `jaxfp.bench`.
"""
