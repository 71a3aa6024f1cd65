"""GeoDelta prompts."""
