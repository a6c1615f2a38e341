"""Speech data: decoding and checking audio, cleaning text, the local dataset store and data sources."""
