"""Generation-based evaluation: greedy transcripts, WER/CER, per-utterance predictions and comparisons."""
