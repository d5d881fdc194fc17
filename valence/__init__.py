"""Positive vs. negative image valence: the library behind the DVC stages in stages/."""
