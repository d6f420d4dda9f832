"""curatorch: train multimodal models with less compute.

Joint example selection (JEST), data-filtering scaling laws and MMPareto gradient
integration, on one training loop.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
