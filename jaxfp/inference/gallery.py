"""A gallery of known sources, and open-set attribution against it.

A gallery is built from any folder-per-source tree (`DIR/<source>/**/*.png`;
real photographs are one more source): each source's images are embedded by
a checkpoint's source embedding and kept as their normalised mean (the
centroid) and count. It is saved as one .npz (`save`), with the checkpoint's
step and the calibration it was built with.

Attribution (`attribute`): the nearest known source (cosine to the
centroids) and P(unknown), the calibrated probability that the image comes
from none of the gallery's sources (`sources.unknown_probability`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

from absl import logging
import numpy as np

from jaxfp.core import console
from jaxfp.core import files
from jaxfp.data import images as images_lib
from jaxfp.inference import network
from jaxfp.inference import sources

FORMAT = 1


class GalleryError(ValueError):
  """A gallery file that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Gallery:
  names: tuple[str, ...]
  centroids: np.ndarray  # [S, D] unit rows.
  counts: np.ndarray  # [S] images per source.
  calibration: dict  # `sources.calibrate`'s result.
  step: int  # The checkpoint step whose embedding built it.


def source_folders(tree: str) -> dict[str, list[str]]:
  """Source name -> its image files, for each folder of `tree` holding
  images (below it, recursively); a tree without such folders is an error."""
  if not os.path.isdir(tree):
    raise FileNotFoundError(f'--tree {tree!r} is not a folder')
  found = {}
  for name in sorted(filter(images_lib.visible, os.listdir(tree))):
    path = os.path.join(tree, name)
    if os.path.isdir(path):
      paths = images_lib.files_under(path)
      if paths:
        found[name] = paths
  if not found:
    raise ValueError(f'--tree {tree!r} has no source folder with images '
                     '(expected TREE/<source>/*.png ...)')
  return found


def embed_files(loaded: network.Loaded, paths, *, batch_size: int = 32,
                policy: str = 'resize', progress: bool = False):
  """(kept paths, unit embeddings [N, D], (path, reason) failures) of a
  source-embedding checkpoint (callers check: `network.require_embedding`)."""
  return network.vectors_of_files(
      loaded, paths, lambda out: out['embedding'], batch_size=batch_size,
      policy=policy, progress=progress)


def build(loaded: network.Loaded, tree: str, *, batch_size: int = 32,
          policy: str = 'resize', progress: bool = True
          ) -> tuple[Gallery, list[tuple[str, str]]]:
  """The gallery of every source folder of `tree`, and the files skipped."""
  network.require_embedding(loaded, 'a gallery')
  folders = source_folders(tree)
  calibration = sources.calibration_of(loaded.directory, loaded.step)
  paths = [p for ps in folders.values() for p in ps]
  owner = {p: name for name, ps in folders.items() for p in ps}
  kept, unit, failures = embed_files(loaded, paths, batch_size=batch_size,
                                     policy=policy, progress=progress)
  labels = np.array([owner[p] for p in kept])
  failures += [(os.path.join(tree, m), 'no readable image in this source')
               for m in sorted(set(folders) - set(labels.tolist()))]
  if not kept:
    raise ValueError(f'--tree {tree!r}: no image could be read')
  names, means = sources.centroids(unit, labels)
  counts = np.array([(labels == n).sum() for n in names])
  return Gallery(tuple(str(n) for n in names), means, counts, calibration,
                 loaded.step), failures


def save(gallery: Gallery, path: str) -> None:
  """One .npz; written whole (temporary file, then renamed)."""
  tmp = f'{path}.tmp.npz'
  np.savez(tmp, format=FORMAT, names=np.array(gallery.names),
           centroids=gallery.centroids.astype(np.float32),
           counts=gallery.counts, step=gallery.step,
           calibration=json.dumps(files.json_safe(gallery.calibration)))
  os.replace(tmp, path)


def load(path: str) -> Gallery:
  if not os.path.isfile(path):
    raise GalleryError(f'gallery {path!r} does not exist (build one with '
                       'python -m jaxfp.gallery)')
  try:
    with np.load(path, allow_pickle=False) as z:
      if int(z['format']) != FORMAT:
        raise GalleryError(f'gallery {path!r} has format {int(z["format"])}'
                           f', this jaxfp reads {FORMAT}')
      gallery = Gallery(tuple(str(n) for n in z['names']),
                        z['centroids'].astype(np.float64), z['counts'],
                        json.loads(str(z['calibration'])), int(z['step']))
  except GalleryError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # numpy raises many types for a file that is not one of ours.
    raise GalleryError(f'gallery {path!r} cannot be read: '
                       f'{type(e).__name__}: {e}') from e
  # Refused here, or every image would be skipped as if the network failed.
  bad = [n for n, c in zip(gallery.names, gallery.centroids)
         if not np.all(np.isfinite(c))]
  if bad:
    raise GalleryError(f'gallery {path!r} is damaged: the centroids of '
                       f'{len(bad)} sources hold NaN or infinite values '
                       f'({", ".join(bad[:3])}); build it again')
  odd = [k for k, v in gallery.calibration.items()
         if isinstance(v, float) and not np.isfinite(v)]
  if odd:
    raise GalleryError(f'gallery {path!r} is damaged: its calibration '
                       f'values {odd} are not finite; build it again')
  return gallery


def attribute(gallery: Gallery, unit: np.ndarray) -> list[dict]:
  """For each unit embedding: the nearest known source, its cosine, and the
  calibrated P(unknown)."""
  index, cosine = sources.nearest(gallery.centroids, np.atleast_2d(unit))
  p_unknown = sources.unknown_probability(gallery.calibration, cosine)
  return [{'nearest_source': gallery.names[i], 'cosine': float(c),
           'unknown_probability': float(p)}
          for i, c, p in zip(index, cosine, p_unknown)]


def describe(source: dict) -> str:
  """One line of `attribute`'s result."""
  return (f'nearest known source: {source["nearest_source"]} (cosine '
          f'{source["cosine"]:.3f}); P(unknown source) = '
          f'{source["unknown_probability"]:.3f}')


def load_for(path: str, loaded: network.Loaded) -> Gallery:
  """The gallery at `path`, checked against the checkpoint that will use
  it."""
  gallery = load(path)
  network.require_embedding(loaded, '--gallery')
  check_fits(gallery, loaded)
  return gallery


def check_fits(gallery: Gallery, loaded: network.Loaded) -> None:
  """A gallery built by another embedding is refused; another step of the
  same run is only a warning (the embedding changed, the names did not)."""
  dim = network.embedding_dim(loaded)
  if gallery.centroids.shape[1] != dim:
    raise GalleryError(f'the gallery holds {gallery.centroids.shape[1]}-d '
                       f'embeddings, the checkpoint makes {dim}-d ones')
  if gallery.step != loaded.step:
    logging.warning('the gallery was built at step %d, the checkpoint is '
                    'step %d', gallery.step, loaded.step)


def run(checkpoint: str, tree: str, output: str, *, batch_size: int = 32,
        policy: str = 'resize') -> int:
  """The gallery command; returns the exit status (0, or 1 when files were
  skipped)."""
  output = files.check_output_file(output, '--output', inputs=[tree])
  loaded = network.load(checkpoint)
  gallery, failures = build(loaded, tree, batch_size=batch_size,
                            policy=policy)
  for path, reason in failures:
    print(f'skipped {images_lib.one_line(path)}: {reason}', file=sys.stderr)
  save(gallery, output)
  print(f'{len(gallery.names)} sources, {int(gallery.counts.sum())} images '
        f'-> {output} (step {gallery.step})')
  return 1 if failures else 0
