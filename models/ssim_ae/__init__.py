"""The SSIM autoencoder of the surface-inspection documents."""

from models.ssim_ae.network import SSIMAutoencoder

__all__ = ["SSIMAutoencoder"]
