"""GeoDelta tools."""
