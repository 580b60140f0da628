"""Inference on image files: no TensorFlow, no torch, no training code (each
module's part: docs/layout.md)."""
