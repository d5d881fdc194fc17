"""Lets `python stages/<stage>.py` import the `valence` package from the repository root."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
