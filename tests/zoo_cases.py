"""Architectures for the zoo tests: together they use every variant."""

from jaxfp.zoo import architecture as arch_lib


def covering_architectures() -> list[arch_lib.Architecture]:
  """Per family, four architectures that use every variant of each choice
  the family can take (image-to-image nets also every downsampling)."""
  variants = {
      'normalization': arch_lib.NORMALIZATIONS,
      'upsampling': tuple(arch_lib.UPSAMPLINGS),
      'block_nonlinearity': arch_lib.NONLINEARITIES,
      'last_nonlinearity': arch_lib.LAST_NONLINEARITIES,
      'skip_connection': (True, False),
      'channel_attention': (False, True),
  }
  shapes = [(12, (8,), 1), (8, (8, 16), 2), (24, (16, 12, 8), 3),
            (32, (8, 8, 16, 32), 1)]
  # Noise-to-image nets have a block per upsampling stage: at least two.
  noise_shapes = [(12, (8, 12), 1)] + shapes[1:]
  downs = ('none', 'stride_conv', 'avg_pool', 'stride_conv')
  archs = []
  for f, family in enumerate(arch_lib.FAMILIES):
    for i, (stem, filters, layers) in enumerate(
        noise_shapes if family in arch_lib.NOISE_FAMILIES else shapes):
      choice = {k: v[(i + f) % len(v)] for k, v in variants.items()}
      archs.append(arch_lib.Architecture(
          stem_filters=stem, block_filters=filters, layers_per_block=layers,
          downsampling='none' if family != 'image_to_image' else downs[i],
          family=family, **choice))
  return archs


def arch_id(a: arch_lib.Architecture) -> str:
  return f'{a.family}-{a.normalization}-{a.upsampling}-{a.downsampling}'
