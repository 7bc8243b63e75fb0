"""The BirdNET-Analyzer adapter.

``model_files`` is light and safe anywhere; ``upsampling`` (BirdNET's upsampling, the same arrays, fast) is pure
numpy. ``embeddings``, ``training`` and ``analysis`` import TensorFlow and BirdNET-Analyzer; only the worker
processes that extract or train, and `hpc-radr analyze` once its input is checked, import them.
"""
