"""GeoDelta perception."""
