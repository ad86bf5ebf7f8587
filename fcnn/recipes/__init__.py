"""Training recipes: complete, resumable command-line runs of the classic
architectures on real data (`python -m fcnn.recipes.cifar10`)."""
