"""TFDS datasets of jaxfp; importing this registers them with TFDS.

- `jaxfp_zoo` (zoo_dataset.ZooDataset): the built-in zoo of generators.
- `model_parsing` (model_parsing.ModelParsing): the published dataset, from a
  manual download directory.

Both share `folder` (the image-tree reader) and keep the ground truth,
per-GM image counts and skipped files in `builder.info.metadata`.
"""

from jaxfp.datasets import folder
from jaxfp.datasets import model_parsing
from jaxfp.datasets import zoo_dataset
from jaxfp.datasets.model_parsing import ModelParsing
from jaxfp.datasets.zoo_dataset import ZooDataset
