"""expMAE: masked autoencoder pretraining on face crops and per-shard feature extraction."""
from .model import MAE, MAE_SIZES, MAEConfig, create_mae

__all__ = ["MAE", "MAEConfig", "MAE_SIZES", "create_mae"]
