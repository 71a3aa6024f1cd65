"""Change masking: the masker registry (CVA, IR-MAD, water, auto), execution engines, change objects."""
