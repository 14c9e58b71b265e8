"""expmae: semi-supervised multimodal emotion recognition with expression masked autoencoders."""
__version__ = "0.1.0"
