"""The published networks' outputs, on top of our modules' logits.

Subclasses, not wrappers, so the parameter tree is exactly that of
FingerprintParser / FingerprintClassifier and one set of variables serves
training, evaluation and these published-style outputs.

The published heads end in a sigmoid on every unit (also on the 2-unit
classification heads, where a softmax would be usual), and each fine loss
head's two outputs are multiplied by unit 1 of its coarse group's output.
"""

import flax.linen as nn

from jaxfp import models
from jaxfp.core import published
from jaxfp.core import spectrum as spectrum_lib


class PublishedParser(models.FingerprintParser):
  """Image [N, H, W, 3] -> the published parsing outputs (after sigmoid).

  Returns:
    'fingerprint' [N, H, W, 3], 'spectrum' [N, H, W];
    'continuous' [N, C]; 'discrete' tuple of [N, k_d];
    'coarse_pairs' [N, K, 2] and 'fine_pairs' [N, F, 2]: the published
      2-unit outputs, the fine ones multiplied by their group's unit 1;
    'coarse' [N, K] = coarse_pairs[..., 1], 'fine' [N, F] = fine_pairs[..., 1]:
      P(loss group / type used) as the published code reads them;
    'logits': FingerprintParser's logits ('continuous', 'discrete', 'coarse'
      [N, K, 2], 'fine' [N, F, 2]) before the sigmoids.
  """

  def __call__(self, images, *, train: bool):
    outputs = super().__call__(images, train=train)
    coarse, fine = published.sigmoid_loss_heads(
        outputs['coarse'], outputs['fine'], self.schema.fine_to_coarse)
    return {
        'fingerprint': outputs['fingerprint'],
        'spectrum': spectrum_lib.magnitude_spectrum(outputs['fingerprint']),
        'continuous': nn.sigmoid(outputs['continuous']),
        'discrete': tuple(nn.sigmoid(d) for d in outputs['discrete']),
        'coarse_pairs': coarse,
        'fine_pairs': fine,
        'coarse': coarse[..., 1],
        'fine': fine[..., 1],
        'logits': {k: v for k, v in outputs.items() if k != 'fingerprint'},
    }


class PublishedClassifier(models.FingerprintClassifier):
  """FingerprintClassifier outputs plus 'probabilities' = sigmoid(logits)."""

  def __call__(self, images, *, train: bool):
    outputs = super().__call__(images, train=train)
    return {**outputs, 'probabilities': nn.sigmoid(outputs['logits'])}
