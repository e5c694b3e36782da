"""snn2chip's model zoo: residual spiking networks (SEW-ResNet, MS-ResNet, Spiking ResNet), the ReLU
ANN ResNet, their training on scikit-learn's digits, NIR export, and random-weight scale generators.

Run from the repository root: ``python -m models.zoo`` (``make zoo``) rebuilds ``models/zoo/``;
``python -m models.scale`` builds the large random-weight graphs. See models/README.md.
"""
