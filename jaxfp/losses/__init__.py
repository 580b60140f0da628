"""Loss functions: fingerprint constraints (FEN) and parsing heads (PN)."""

from jaxfp.losses.fingerprint import DEFAULT_LOW_FREQ_RADIUS
from jaxfp.losses.fingerprint import fingerprint_losses
from jaxfp.losses.fingerprint import GRAY_WEIGHTS
from jaxfp.losses.fingerprint import LOSS_NAMES
from jaxfp.losses.fingerprint import low_frequency_window
from jaxfp.losses.fingerprint import magnitude_loss
from jaxfp.losses.fingerprint import magnitude_spectrum
from jaxfp.losses.fingerprint import PUBLISHED_WEIGHTS
from jaxfp.losses.fingerprint import repetitive_loss
from jaxfp.losses.fingerprint import spectrum_loss
from jaxfp.losses.fingerprint import symmetry_loss
from jaxfp.losses.fingerprint import to_gray
from jaxfp.losses.parsing import DEFAULT_HEAD_WEIGHT
from jaxfp.losses.parsing import fine_log_probabilities
from jaxfp.losses.parsing import fine_probabilities
from jaxfp.losses.parsing import masked_mse
from jaxfp.losses.parsing import parsing_class_weights
from jaxfp.losses.parsing import parsing_loss
from jaxfp.losses.parsing import uniform_class_weights
from jaxfp.losses.parsing import weighted_cross_entropy
