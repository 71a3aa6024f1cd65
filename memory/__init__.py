"""GeoDelta memory."""
