"""pet: Pattern-Exploiting Training for few-shot text classification."""

__version__ = "0.1.0"
