"""features → fold → train → export: model builders, ImageNet backbones, frozen features, heads, training."""
