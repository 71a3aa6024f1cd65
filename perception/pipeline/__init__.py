"""The perception pipeline without the agent: detect a pair or a series, with atomic output folders."""
