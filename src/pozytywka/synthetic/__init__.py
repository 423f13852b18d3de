"""Synthetic catalogue library: generator, dirt, vocabulary, JSON Lines, the hidden truth."""
