"""Tests of batchlabel.dataset."""
