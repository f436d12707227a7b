"""Yuanjian (元件): the governed data component development platform."""

__version__ = "0.1.0"
