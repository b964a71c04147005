"""Learnable building blocks shared by losses and strategies (connectors, embeddings, paraphraser/translator,
ReviewKD's attention-based fusion).

Imports nothing above it: ``densekd.losses`` and ``densekd.distill`` both build on this package.
"""
from densekd.nn.connectors import (ConvConnector, ConvReg, LinearEmbed, MLPEmbed, Paraphraser, Translator,
                                   build_connector)
from densekd.nn.review import ABF, ReviewFusion

__all__ = ["ConvConnector", "ConvReg", "LinearEmbed", "MLPEmbed", "Paraphraser", "Translator", "build_connector",
           "ABF", "ReviewFusion"]
