"""Test session set-up: four simulated CPU devices, so pmap paths run for real.

The flag must be set before jax is first imported, hence here.
"""
import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=4')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
