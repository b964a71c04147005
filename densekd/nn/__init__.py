"""Learnable building blocks shared by losses and strategies (connectors, embeddings, paraphraser/translator).

Imports nothing above it: ``densekd.losses`` and ``densekd.distill`` both build on this package.
"""
from densekd.nn.connectors import (ConvConnector, ConvReg, LinearEmbed, MLPEmbed, Paraphraser,  # noqa: F401
                                   Translator, build_connector)
