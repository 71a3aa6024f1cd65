"""Package data: the bundled demo scene and shipped weights."""
