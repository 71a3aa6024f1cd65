"""Land cover per date: documented rules, the water-only case, the learned RGB classifier, transitions."""
