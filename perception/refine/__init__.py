"""Region refinement (SAM and the morphological fallback): coarse change regions -> precise boundaries."""
