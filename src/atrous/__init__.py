"""atrous — image segmentation along the DeepLab lineage, in PyTorch.

The public face::

    import atrous
    atrous.list_models()
    model = atrous.create_model("deeplabv3_resnet101", num_classes=21, output_stride=16, multi_grid=(1, 2, 4))
    model.save_pretrained("runs/my_model")
    model = atrous.load_model("runs/my_model")
"""

from .models import SegmentationModel, create_model, list_models, load_checkpoint, load_model

__version__ = "0.1.0"

__all__ = ["SegmentationModel", "__version__", "create_model", "list_models", "load_checkpoint", "load_model"]
