"""Generation-based evaluation: greedy transcripts (the families' fast decoder: batching.py, decoding.py), WER/CER,
per-utterance predictions and comparisons."""
