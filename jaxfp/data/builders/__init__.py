"""TFDS builders of jaxfp; importing this registers them with TFDS.

- `jaxfp_zoo` (zoo.ZooDataset): the built-in zoo of generators.
- `model_parsing` (model_parsing.ModelParsing): the published dataset, from a
  manual download directory.
- `image_classes` (image_classes.ImageClasses): one folder per class.

All share `folder` (the TFDS side of an image tree) and keep the ground
truth or classes, per-folder image counts and skipped files in
`builder.info.metadata`.
"""

from jaxfp.data.builders import folder
from jaxfp.data.builders import image_classes
from jaxfp.data.builders import model_parsing
from jaxfp.data.builders import zoo
from jaxfp.data.builders.image_classes import ImageClasses
from jaxfp.data.builders.model_parsing import ModelParsing
from jaxfp.data.builders.zoo import ZooDataset
