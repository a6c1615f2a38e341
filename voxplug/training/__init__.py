"""Training: collators, trainers (LoRA, full) and the run that ties data, model and evaluation together."""
