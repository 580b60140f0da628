"""The published input normalisation: every channel (x / 255 - MEAN) / STD.

Kept apart from the input pipelines so that inference and weight conversion
need neither TensorFlow nor the datasets.
"""

MEAN = 0.6490
STD = 0.1269
