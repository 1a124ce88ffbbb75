"""End-to-end throughput as a ratio of raw SentencePiece speed, measured in one run.

    python -m bench.throughput [--input GLOB] [--limit_mb N] [--mode in_process|multi_processing]

(a) the limit: the corpus encoded by SentencePiece alone with two threads;
(b) ``fimflow run`` on the same corpus on the DirectRunner, fim_rate 0.5.
Other flags go to ``fimflow run``. Prints MB/s of input text, tokens/s, the ratio b/a and peak memory. A
benchmark, not a test: numbers depend on the machine; only ratios taken in
the same run are comparable.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time

from pipeline import defaults
from pipeline.cli import main as fimflow
from pipeline.options import resolve_inputs
from transforms.read import Document, RecordReader
from transforms.tokenizer import SpecialTokenNames, Tokenizer, read_model_bytes


def corpus_files(patterns, limit_bytes):
    files = resolve_inputs(patterns) if patterns else defaults.default_corpus_files()
    chosen, total = [], 0
    for path, size in files:
        if total >= limit_bytes:
            break
        chosen.append(path)
        total += size
    return chosen


def load_corpus(files) -> list[str]:
    reader = RecordReader()
    return [d.text for f in files for d in reader.read(f) if isinstance(d, Document)]


def raw_encoding(texts: list[str], tokenizer: Tokenizer, threads: int) -> tuple[float, int]:
    start = time.perf_counter()
    encoded = tokenizer.encode_documents(texts, num_threads=threads)
    return time.perf_counter() - start, sum(map(len, encoded))


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", action="append", help="Corpus (default: the Python standard library).")
    parser.add_argument("--limit_mb", type=float, default=1000.0, help="Use at most this much of the corpus.")
    parser.add_argument("--mode", choices=("in_process", "multi_processing"), default="multi_processing")
    parser.add_argument("--context_length", type=int, default=2048)
    args, extra = parser.parse_known_args(argv)
    texts = load_corpus(corpus_files(args.input, int(args.limit_mb * 1e6)))
    size = sum(len(t.encode("utf-8")) for t in texts)
    tokenizer = Tokenizer(read_model_bytes(defaults.bundled_tokenizer_path()), SpecialTokenNames())
    raw_seconds, tokens = raw_encoding(texts, tokenizer, threads=2)
    out = tempfile.mkdtemp(prefix="fimflow-bench-")
    # One JSONL file holds exactly the measured texts, so both runs see the same corpus.
    corpus = f"{out}/corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"content": t}) + "\n" for t in texts)
    runner = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"] \
        if args.mode == "multi_processing" else []
    try:
        start = time.perf_counter()
        code = fimflow(["run", "--input", corpus, "--output", f"{out}/data", "--context_length",
                        str(args.context_length), "--fim_rate", "0.5", *runner, *extra])
        pipeline_seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {
        "documents": len(texts), "input_mb": round(size / 1e6, 2), "tokens": tokens,
        "raw_sentencepiece_mb_s": round(size / 1e6 / raw_seconds, 2),
        "pipeline_mb_s": round(size / 1e6 / pipeline_seconds, 2),
        "pipeline_tokens_s": round(tokens / pipeline_seconds),
        "ratio": round(raw_seconds / pipeline_seconds, 3),
        "pipeline_seconds": round(pipeline_seconds, 1), "mode": args.mode,
        "peak_rss_mb": round(peak_rss_mb()), "exit_code": code,
    }
    for k, v in result.items():
        print(f"{k:24s} {v}")
    return result


if __name__ == "__main__":
    main()
