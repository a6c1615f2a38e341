"""Model families: how each ASR architecture is loaded, adapted and asked for transcripts."""
