"""GeoDelta agent."""
