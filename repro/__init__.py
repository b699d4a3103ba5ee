"""repro: a faithful, small PyTorch reproduction of "An Image is Worth 16x16 Words" (ViT, ICLR 2021)."""
from .config import BiTConfig, HybridConfig, ViTConfig, parse_variant
from .models import build_model, create_model
from .vit import VisionTransformer

__version__ = "0.1.0"
__all__ = ["BiTConfig", "HybridConfig", "ViTConfig", "VisionTransformer", "build_model", "create_model", "parse_variant"]
