"""Loss functions: fingerprint constraints (FEN) and parsing heads (PN)."""
