"""expMAE: masked autoencoder pretraining on face crops and per-shard feature extraction."""
from .model import MAE, MAE_SIZES, MAEConfig, create_mae
from .video import VideoMAE, VideoMAEConfig

__all__ = ["MAE", "MAEConfig", "MAE_SIZES", "VideoMAE", "VideoMAEConfig", "create_mae"]
