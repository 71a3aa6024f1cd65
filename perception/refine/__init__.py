"""Region refinement: coarse change regions -> precise boundaries (superpixels, SAM), tile by tile."""
