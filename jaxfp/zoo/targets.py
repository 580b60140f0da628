"""What each generator is trained to do.

Image-to-image generators learn to undo a degradation. Those without
downsampling super-resolve (input: the 2x2-averaged half-size image); those
with downsampling map a same-size degraded image back to the photo: either
blurred and noisy ('restore') or grey ('colorize'). Noise-to-image
generators (GANs, VAE decoders) learn the photos' distribution from latent
maps ('synthesis'): they have no degraded input.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from jaxfp.zoo import architecture as arch_lib

KINDS = ('super_resolution', 'restore', 'colorize', 'synthesis')
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclasses.dataclass(frozen=True)
class Task:
  kind: str
  blur_sigma: float = 0.0  # 'restore' only.
  noise_std: float = 0.0  # 'restore' only, in [0, 1] pixel units.

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)


def sample_tasks(rng: np.random.Generator,
                 archs: list[arch_lib.Architecture]) -> list[Task]:
  """A task per architecture; same-size tasks alternate for downsamplers."""
  downsamplers = sum(a.downsamples for a in archs)
  dealt = iter(arch_lib.deal(rng, ('restore', 'colorize'), downsamplers))
  same_size = [next(dealt) if a.downsamples else None for a in archs]
  tasks = []
  for arch, kind in zip(archs, same_size):
    if arch.noise_input:
      tasks.append(Task('synthesis'))
    elif not arch.downsamples:
      tasks.append(Task('super_resolution'))
    elif kind == 'restore':
      tasks.append(Task('restore',
                        blur_sigma=round(float(rng.uniform(0.7, 1.6)), 3),
                        noise_std=round(float(rng.uniform(0.02, 0.08)), 3)))
    else:
      tasks.append(Task('colorize'))
  return tasks


def degrade(task: Task, targets: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
  """The generator inputs for [N, S, S, 3] targets in [0, 1], also in [0, 1]."""
  if task.kind == 'super_resolution':
    n, s, _, c = targets.shape
    return targets.reshape(n, s // 2, 2, s // 2, 2, c).mean(axis=(2, 4))
  if task.kind == 'colorize':
    grey = targets @ _LUMA
    return np.repeat(grey[..., None], 3, axis=-1)
  if task.kind == 'synthesis':
    raise ValueError('a synthesis task has no degraded input: its generator '
                     'reads latent maps')
  if task.kind == 'restore':
    sigma = task.blur_sigma
    blurred = ndimage.gaussian_filter(targets, sigma=(0, sigma, sigma, 0),
                                      mode='reflect')
    noisy = blurred + task.noise_std * rng.standard_normal(
        targets.shape).astype(np.float32)
    return np.clip(noisy, 0.0, 1.0)
  raise ValueError(f'unknown task kind {task.kind!r}; expected one of '
                   f'{list(KINDS)}')
