"""The names of the model zoo (:mod:`bnncc.models`), without importing it (it imports TensorFlow): the CLI tells
a zoo name from a missing file before any heavy import."""

ZOO_NAMES = ("quicknet_small", "quicknet", "quicknet_large", "birealnet18", "binary_alexnet", "binary_resnet_e18")
