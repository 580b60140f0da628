"""Data: image trees, TFDS records, tf.data pipelines, perturbations.

TensorFlow-free, for inference and light tools: `images` (finding and
loading image files), `trees` (dataset trees and their ground truth),
`splits` (held-out GMs and folds), `perturbations`, `builtin_classes`.
With TensorFlow: `gm_folders` and `classes` (the pipelines), `batching`,
`augment`, `builders` (the TFDS builders).
"""
