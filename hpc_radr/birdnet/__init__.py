"""The BirdNET-Analyzer adapter.

``model_files`` is light and safe anywhere. ``embeddings`` and ``training`` import TensorFlow and
BirdNET-Analyzer; only the worker processes that extract or train import them.
"""
