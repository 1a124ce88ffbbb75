"""fimflow: Fill-in-the-Middle training data at corpus scale on Apache Beam.

Dataflow workers install this package from ``--setup_file``; the pins below
are what the pipeline was tested with.
"""

import setuptools

TENSORFLOW = "tensorflow-cpu==2.21.0"
MATPLOTLIB = "matplotlib>=3.8"
ARRAY_RECORD = "array-record==0.8.6"

setuptools.setup(
    name="fimflow",
    version="0.1.0",
    description="Fill-in-the-Middle training data on Apache Beam: tokenize, shuffle, pack, "
                "FIM after chunking; TFRecord, ArrayRecord, Megatron or Parquet shards.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    # Every subpackage: workers install this package, and a module left out
    # fails only there (a test builds the wheel and looks).
    packages=setuptools.find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*"]),
    package_data={"pipeline": ["assets/*.model"]},
    install_requires=[
        "apache-beam[gcp]==2.77.0",
        "sentencepiece==0.2.1",
        # Hugging Face tokenizer.json files (transforms/core/huggingface_tokenizer.py).
        "tokenizers>=0.22,<0.24",
        "google-cloud-storage>=2.14,<4",
        "numpy>=1.26,<3",
        "pyarrow>=14",
        "zstandard>=0.22",
        # TFRecord checksums; google-cloud-storage depends on it too.
        "google-crc32c>=1.5",
    ],
    # TensorFlow reads datasets back (fimflow inspect, trainers); the pipeline
    # itself writes Example bytes without it, so workers do not install it.
    extras_require={
        "tf": [TENSORFLOW],
        # --output_format array_record (Dataflow's worker image installs it: deploy/requirements.txt).
        "array_record": [ARRAY_RECORD],
        # fimflow report: plots, and examples read back with tf.data.
        "report": [TENSORFLOW, MATPLOTLIB],
        "test": [TENSORFLOW, MATPLOTLIB, "pytest>=8", "hypothesis>=6.100", "gcp-storage-emulator>=2024.8.3",
                 "psutil>=5.9", "selenium>=4.20",
                 # The FIM formats' reference implementations (tests/test_fim_formats.py); transformers 5
                 # needs packages the registries here lack.
                 "transformers==4.57.6", "mistral-common==1.13.1",
                 # Each output format read back by its own ecosystem's reader (tests/test_output_formats.py);
                 # torch 2.13.0 is the CPU build, which megatron-core's readers import.
                 ARRAY_RECORD, "grain==0.2.18", "datasets==5.0.1", "torch==2.13.0", "megatron-core==0.16.1",
                 # Beam's DaskRunner on a local dask.distributed cluster (tests/test_second_engine.py).
                 "dask[distributed]==2026.8.0"],
    },
    entry_points={"console_scripts": ["fimflow=pipeline.cli:console_main"]},
)
