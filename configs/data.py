"""`config.data`: where images come from and which are held out.

`parsing()`: model parsing on GM folders with a ground-truth table (the
built-in zoo by default, or the published dataset); `classes(layout)`:
detection and attribution on folder-per-class images (the built-in
real-vs-zoo trees by default, or a folder of one's own).
"""

import ml_collections

from configs import zoo

# The published 116-GM tables (docs/published.md, "Ground-truth tables").
PUBLISHED_NPY_FILES = {
    'net': 'ground_truth_net_116_15dim.npy',
    'coarse': 'ground_truth_loss_116_3dim.npy',
    'fine': 'ground_truth_loss_116_9dim.npy',
}


def parsing() -> ml_collections.ConfigDict:
  """The default zoo at 64x64; a quarter of its GMs held out at random."""
  c = ml_collections.ConfigDict()
  c.name = 'zoo'  # 'zoo' | 'model_parsing'.
  c.cache_dir = ''  # '' = $JAXFP_CACHE or ~/.cache/jaxfp.
  c.image_size = 64
  c.zoo = zoo.get_config()
  # model_parsing: the published images; ground truth in ground_truth_dir
  # ('' = the manual dir): ground_truth.csv + schema.json, else these tables.
  c.manual_dir = ''
  c.ground_truth_dir = ''
  c.ground_truth_files = ml_collections.ConfigDict(dict(PUBLISHED_NPY_FILES))
  # Held-out GMs, from the first of these that is set (jaxfp.data.splits):
  # test_set: the paper's RED116 test set 1..4 (model_parsing; 0 = none);
  # test_gms: these names (a tuple, or 'a,b,c' on the command line);
  # num_folds > 0: fold number `fold` of num_folds that partition the GMs at
  # random (split_seed); num_test_gms > 0: that many GMs at random; else
  # test_fraction of the GMs at random (1.0: every GM, for jaxfp.evaluate
  # on data the checkpoint never saw). Random picks and folds keep GMs of
  # one architecture on one side. A quarter gives the random-GT baseline a
  # spread narrow enough for z-scores to mean something (8 GMs did not).
  c.test_set = 0
  c.test_gms = ()
  c.num_folds = 0
  c.fold = 0
  c.num_test_gms = 0
  c.test_fraction = 0.25
  c.split_seed = 0
  # Train on this many of the other GMs (at random, split_seed); 0 = all.
  # The rest are not used: curves against the number of training GMs.
  c.num_train_gms = 0
  # The closed set: this fraction of each training GM's images (by a hash
  # of the file path) is held back from training and scored beside the
  # held-out GMs, so that memorisation shows in every report.
  c.closed_set_fraction = 0.1
  c.shuffle_buffer = 0  # 0 = the whole training set (a uniform shuffle).
  return c


def use_test_zoo(c: ml_collections.ConfigDict) -> None:
  """The tiny zoo of every test preset on the zoo (6 GMs x 6 images, 2
  training steps, 2 held out): one config, so the test session builds it
  once and every test file shares it."""
  c.zoo.num_generators = 6
  c.zoo.images_per_generator = 6
  c.zoo.train_steps = 2
  c.num_test_gms = 2


def classes(layout: str, image_size: int = 128) -> ml_collections.ConfigDict:
  """A classifier's data: the built-in images of `layout` by default."""
  c = ml_collections.ConfigDict()
  c.source = 'builtin'  # 'builtin' | 'folder'.
  c.root = ''  # source='folder': root/<class>/*.png.
  c.layout = layout  # Built-in tree: 'detection' | 'attribution'.
  c.cache_dir = ''  # '' = $JAXFP_CACHE or ~/.cache/jaxfp.
  c.image_size = image_size
  c.zoo = zoo.get_config()
  c.zoo.image_size = image_size
  c.zoo.num_generators = 8 if layout == 'detection' else 4
  c.zoo.images_per_generator = 100
  c.num_real = 400 if layout == 'detection' else 100
  c.test_fraction = 0.25
  c.shuffle_buffer = 0  # 0 = the whole training set.
  return c
