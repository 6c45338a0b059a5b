"""batchlabel."""
