"""Inference on image files: no TensorFlow, no torch, no training code.

network (a checkpoint's network ready to run), predict (what it sees in
each image), cluster (grouping images by fingerprint).
"""
