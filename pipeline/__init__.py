"""fimflow: Fill-in-the-Middle training data at corpus scale on Apache Beam."""

__version__ = "0.1.0"
