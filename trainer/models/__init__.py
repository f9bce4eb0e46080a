"""Model architectures by name, imported lazily: ``build_model(name, config)``."""
from __future__ import annotations

from edge.base.registry import Registry

ARCHITECTURES = Registry("architecture", {
    "conv_autoencoder": "trainer.models.autoencoder:ConvAutoencoder",
    "conv_vae": "trainer.models.autoencoder:ConvVAE",
    "dcgan_generator": "trainer.models.dcgan:DCGANGenerator",
    "faceswap_autoencoder": "trainer.models.autoencoder:FaceSwapAutoencoder",
    "dlib_resnet": "trainer.models.dlib_resnet:DlibResNet",
    "minifasnet": "trainer.models.minifasnet:MiniFASNet",
    "mobilefacenet_s": "trainer.models.mobilefacenet:MobileFaceNetS",
})


def build_model(name: str, config: dict):
    """Every architecture class takes its config as keyword arguments, so a checkpoint can rebuild it."""
    return ARCHITECTURES.get(name)(**config)
