"""Labelled change pairs from GEODELTA_DATA and the metrics benchmarks and training score them with."""
