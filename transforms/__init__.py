"""Beam PTransforms of the fimflow pipeline, one stage per module.

read -> tokenize -> shuffle -> pack -> fim -> write, composed in
``pipeline.build``.
"""
