"""Constants shared by data, losses and metrics."""

# The one ignore label: transform padding, collation, losses and metrics all use it.
IGNORE_INDEX = 255

# ImageNet statistics, which torchvision's (and so atrous's) pretrained backbones expect.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
