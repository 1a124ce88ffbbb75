"""End-to-end throughput as a ratio of the tokenizer library's own speed, measured in one run.

    python -m bench.throughput [--input GLOB] [--limit_mb N] [--tokenizer MODEL] [--repeat N]
                               [--mode default|in_process|multi_processing] [fimflow run flags...]
    python -m bench.throughput --scaling [--input GLOB] [--limit_mb N] [fimflow run flags...]

(a) the limit: the corpus encoded by the tokenizer's library alone on all cores: SentencePiece with a
    thread per core, or for a ``tokenizer.json`` ``tokenizers``' own batch encoding (its thread pool);
(b) ``fimflow run`` on the same corpus on the DirectRunner, fim_rate 0.5;
(c) the CPU time of each stage's own code run directly on the same corpus in
    one process, so that the remainder (``other_cpu_seconds``) is what the
    runner adds (moving and pickling data), plus, with tokenizer helper
    processes, their own word caches warming up.
Before the rounds, one untimed run on a slice of the corpus imports what a
pipeline run imports lazily (Beam's runner, its filesystems): a fixed cost per
process, reported as ``startup_seconds``, that would otherwise land on the
first round only. It cannot warm the word cache: each run loads its own
tokenizer.
Prints MB/s of input text, tokens/s, the ratio b/a, the stage split, output
size and peak memory (summed over its processes). A benchmark, not a test:
numbers depend on the machine; only ratios taken in the same run are comparable.

``--scaling`` (``scaling``) measures how the default command scales instead:
on a 1x (``--limit_mb``) and a 3x corpus of distinct real text, at 1, 2 and
all cores, SentencePiece alone with a thread per core and ``fimflow run`` as a
process of its own pinned to those cores (so it picks its running mode from
them); it prints the whole-process ratio at 3x, the steady-state ratio between
1x and 3x, peak summed RSS at both sizes and the marginal bytes of memory per
byte of input, and the launcher's own CPU seconds (the runner's serial work).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections import Counter
from typing import Iterator, Optional

import psutil
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import defaults
from pipeline.cli import main as fimflow
from pipeline.machine import available_cores
from pipeline.plan import RunPlan, plan_run, resolve_inputs
from transforms.core.records import example_record
from transforms.core.shard_content import ShardContent
from transforms.core.tokenizer import Tokenizer, TokenizerHandle
from transforms.read import ReadRangeStep, RecordReader, split_ranges
from transforms.schema import Document, InputSelection
from transforms.shuffle import keyed_by_bucket, sorted_bucket
from transforms.tokenize import BATCH_CHARS, MAX_ENCODE_CHARS, TokenizeBatchStep


def corpus_files(patterns, limit_bytes):
    files = resolve_inputs(*((patterns,) if patterns else defaults.default_corpus()))
    chosen, total = [], 0
    for file in files:
        if total >= limit_bytes:
            break
        chosen.append(file.path)
        total += file.size
    return chosen


def load_corpus(files) -> list[str]:
    reader = RecordReader()
    return [d.text for f in files for d in reader.read(f) if isinstance(d, Document)]


def raw_encoding(texts: list[str], tokenizer: Tokenizer, threads: int) -> tuple[float, int]:
    """The tokenizer's library alone on whole documents: no word cache."""
    start = time.perf_counter()
    encoded = tokenizer.encode_documents(texts, num_threads=threads)
    return time.perf_counter() - start, sum(map(len, encoded))


def batched(docs: list[Document], chars: int) -> Iterator[list[Document]]:
    """``docs`` in consecutive batches of about ``chars`` of text, as the pipeline batches them."""
    batch, size = [], 0
    for doc in docs:
        if batch and size + len(doc.text) > chars:
            yield batch
            batch, size = [], 0
        batch.append(doc)
        size += len(doc.text)
    if batch:
        yield batch


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def stage_cpu_seconds(plan: RunPlan) -> dict:
    """CPU seconds of each stage's own step over the planned run, in one thread of one process, no runner.

    Reading and tokenizing run the very step objects the pipeline's DoFns
    run; after the shuffle, the ``transforms.core.shard_content.ShardContent``
    a shard step makes its shards with (packing, FIM, serializing), with the
    plan's buckets, so the split cannot drift from the pipeline.
    """
    times: dict = {}
    stats: Counter = Counter()

    def timed(name, fn):
        start = _cpu_seconds()
        result = fn()
        times[name] = round(_cpu_seconds() - start, 2)
        return result

    # A fresh handle loads a fresh tokenizer, whose word cache starts as cold as the pipeline's.
    handle = TokenizerHandle(plan.tokenizer_path, plan.tokenizer.names, reference=not plan.word_cache)
    read = ReadRangeStep(RecordReader(plan.text_field, plan.id_field, plan.max_file_bytes))
    docs = timed("read", lambda: [d for file in plan.files for part in split_ranges(file, plan.split_bytes)
                                  for d in read(part, stats) if isinstance(d, Document)])
    tokenize = TokenizeBatchStep(handle, available_cores(), 1, MAX_ENCODE_CHARS)
    tokenize.setup()

    def tokenize_all():
        tokenize.start_bundle()
        return [t for batch in batched(docs, BATCH_CHARS) for t in tokenize(batch, stats)] + \
            list(tokenize.finish_bundle(stats))

    try:
        tokenized = timed("tokenize", tokenize_all)
    finally:
        tokenize.teardown()
    content = ShardContent(plan.seed, (plan.fim,), plan.tokenizer.special.eot)

    def shuffle_and_pack():
        buckets: dict = {}
        for doc in tokenized:
            bucket, keyed = keyed_by_bucket(doc, plan.seed, plan.num_shards)
            buckets.setdefault(bucket, []).append(keyed)
        return [c for b in sorted(buckets)
                for c in content.chunks(b, sorted_bucket(buckets[b], plan.seed, plan.dedup, stats))]

    chunks = timed("shuffle_and_pack", shuffle_and_pack)
    tokenizer = handle.acquire()
    examples = timed("fim", lambda: list(content.examples(tokenizer, chunks, plan.fim, Counter())))
    records = timed("serialize", lambda: [example_record(e) for e in examples])
    times["output_bytes"] = sum(map(len, records))
    return times


class PeakMemory:
    """The peak of the summed RSS of a process (default: this one) and its descendants while in the
    ``with`` block.

    Sampled, because ``getrusage`` gives each process's own peak only, and a
    child's includes the parent's pages it shared before it ran ``exec``.
    """

    def __init__(self, interval: float = 0.25, pid: Optional[int] = None):
        self._interval = interval
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_bytes = 0
        # CPU seconds of the process itself, not its descendants, at the last sample.
        self.own_cpu_seconds = 0.0

    def _sample(self):
        try:
            root = psutil.Process(self._pid)
        except psutil.NoSuchProcess:
            return
        while not self._stop.wait(self._interval):
            total = 0
            try:
                processes = [root, *root.children(recursive=True)]
                times = root.cpu_times()
            except psutil.NoSuchProcess:  # It ended.
                return
            self.own_cpu_seconds = times.user + times.system
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.NoSuchProcess:  # It exited meanwhile.
                    pass
            self.peak_bytes = max(self.peak_bytes, total)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def progress_cpu_share() -> float:
    """An upper bound on the share of a run's CPU the progress display takes (``pipeline.progress``).

    A DoFn writes its counts at most once per ``PROGRESS_INTERVAL_SECONDS`` and
    the launcher reads them once per refresh: both are timed here on real files
    and counts, and added up for a run where every DoFn writes as often as allowed.
    """
    from pipeline.progress import Progress
    from transforms.stats import PROGRESS_INTERVAL_SECONDS, _ProgressWriter

    stats = {name: 123_456_789 for name in ("records_read", "bytes_read", "documents", "document_tokens",
                                            "text_chars_read", "text_chars_tokenized", "examples", "fim_tokens")}
    with Progress(1 << 30, 2048, stream=open(os.devnull, "w"), interactive=True,
                  refresh_seconds=3600) as progress:
        writer = _ProgressWriter(progress.directory, "tokenize")
        writer.start()
        start = _cpu_seconds()
        for _ in range(500):
            writer.write(stats, final=True)
        write = (_cpu_seconds() - start) / 500
        start = _cpu_seconds()
        for _ in range(50):
            progress._offsets.clear()
            progress.line()
        # A refresh reads at most what the DoFns wrote since the last one; this reads all 500 each time.
        read = (_cpu_seconds() - start) / 50
    # In one process a stage's DoFns run one at a time; allow four writing at once.
    return 4 * write / PROGRESS_INTERVAL_SECONDS + read / 0.5


def distinct_texts(patterns) -> Iterator[str]:
    """Real text that never repeats: the documents of ``patterns`` (default: this Python's standard
    library, then the sources of its installed packages), each distinct text once. A repeated corpus
    would let the word cache hit everything and flatter any steady state."""
    if patterns:
        selections = [InputSelection(tuple(patterns), (), ())]
    else:
        packages = sysconfig.get_paths()["purelib"]
        selections = [defaults.default_corpus(), InputSelection((packages,), ("*.py",), ("*/__pycache__/*",))]
    reader, seen = RecordReader(), set()
    for selection in selections:
        for file in resolve_inputs(*selection):
            for doc in reader.read(file.path):
                if isinstance(doc, Document) and doc.text.strip() and doc.text not in seen:
                    seen.add(doc.text)
                    yield doc.text


def take_bytes(texts: Iterator[str], limit_bytes: float) -> tuple[list[str], int]:
    """Texts from ``texts`` until they hold at least ``limit_bytes`` of UTF-8 (or it runs out), and their size."""
    taken, total = [], 0
    for text in texts:
        taken.append(text)
        total += len(text.encode("utf-8"))
        if total >= limit_bytes:
            break
    return taken, total


def write_jsonl(path: str, texts: list[str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"content": t}) + "\n" for t in texts)
    return path


def planned_tokenizer(corpus: str, tokenizer: str, extra: list[str]) -> Tokenizer:
    """The tokenizer a run with these flags uses (its --fim_format's special tokens), loaded in this process."""
    with tempfile.TemporaryDirectory(prefix="fimflow-bench-plan-") as out:
        return plan_run(PipelineOptions(["--input", corpus, "--output", f"{out}/plan", "--tokenizer", tokenizer,
                                         *extra])).tokenizer


def pinned_raw_seconds(texts: list[str], tokenizer: Tokenizer, cpus: list[int]) -> float:
    """The tokenizer's library alone on the cores of ``cpus``, its threads pinned to them."""
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        return raw_encoding(texts, tokenizer, threads=len(cpus))[0]
    finally:
        os.sched_setaffinity(0, everything)


def pinned_run(argv: list[str], cpus: list[int]) -> tuple[float, int, int, float]:
    """``fimflow run ARGV`` as its own process, pinned to ``cpus`` (so it sees that many cores and picks its
    mode from them, as on a machine that size): seconds, peak RSS summed over its processes, exit code,
    and the CPU seconds of the launcher process itself (with worker processes: the runner, whose work no
    worker shares)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "pipeline", "run", "--quiet", *argv],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    with PeakMemory(pid=process.pid) as memory:
        _, err = process.communicate()
    seconds = time.perf_counter() - start
    if process.returncode:
        sys.stderr.write(err.decode(errors="replace")[-3000:])
    return seconds, memory.peak_bytes, process.returncode, memory.own_cpu_seconds


def scaling(args, extra: list[str]) -> dict:
    """Ratio to the tokenizer library alone at 1, 2 and all cores, whole-process and steady state (between
    a 1x and a 3x corpus of distinct real text), and the peak summed RSS of both runs at all cores."""
    cpus = sorted(os.sched_getaffinity(0))
    counts = sorted({n for n in (args.cores or (1, 2, len(cpus))) if n <= len(cpus)})
    source = distinct_texts(args.input)
    one, one_bytes = take_bytes(source, args.limit_mb * 1e6)
    more, more_bytes = take_bytes(source, 2 * one_bytes)
    texts = one + more
    corpora = {"1x": (one, one_bytes), "3x": (texts, one_bytes + more_bytes)}
    if not more:
        raise SystemExit("bench: the corpus holds no more distinct text than --limit_mb; pass a smaller one")
    out = tempfile.mkdtemp(prefix="fimflow-scaling-")
    rows = []
    try:
        paths = {name: write_jsonl(f"{out}/{name}.jsonl", corpus) for name, (corpus, _) in corpora.items()}
        tokenizer = planned_tokenizer(paths["1x"], args.tokenizer, extra)

        def run(name: str, n: int) -> tuple[float, int, int, float]:
            return pinned_run(["--input", paths[name], "--output", f"{out}/out-{name}-{n}", "--overwrite",
                               "--tokenizer", args.tokenizer, "--context_length", str(args.context_length),
                               "--fim_rate", "0.5", *extra], cpus[:n])

        # Untimed: the first run reads the corpus and Python's modules from disk.
        pinned_run(["--input", write_jsonl(f"{out}/warmup.jsonl", texts[:20]), "--output", f"{out}/warmup",
                    "--tokenizer", args.tokenizer], cpus)
        for n in counts:
            raw = {name: pinned_raw_seconds(corpus, tokenizer, cpus[:n]) for name, (corpus, _) in corpora.items()}
            runs = {name: run(name, n) for name in corpora}
            (raw1, raw3), ((run1, peak1, code1, _), (run3, peak3, code3, launcher3)) = raw.values(), runs.values()
            rows.append({
                "cores": n, "raw_mb_s": round(corpora["3x"][1] / 1e6 / raw3, 2),
                "fimflow_seconds_1x": round(run1, 1), "fimflow_seconds_3x": round(run3, 1),
                "whole_ratio_1x": round(raw1 / run1, 3), "whole_ratio_3x": round(raw3 / run3, 3),
                "steady_ratio": round((raw3 - raw1) / (run3 - run1), 3) if run3 > run1 else None,
                "peak_rss_mb_1x": round(peak1 / 2**20), "peak_rss_mb_3x": round(peak3 / 2**20),
                "marginal_rss_bytes_per_input_byte": round((peak3 - peak1) / (corpora["3x"][1] - corpora["1x"][1]),
                                                           2),
                "launcher_cpu_seconds_3x": round(launcher3, 1), "exit_codes": [code1, code3]})
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result = {"input_mb_1x": round(corpora["1x"][1] / 1e6, 1), "input_mb_3x": round(corpora["3x"][1] / 1e6, 1),
              "documents_3x": len(texts), "cores_available": len(cpus), "rows": rows}
    print(f"corpus: {result['input_mb_1x']} MB (1x) and {result['input_mb_3x']} MB (3x) of distinct text, "
          f"{len(cpus)} cores")
    for row in rows:
        print("  ".join(f"{k} {v}" for k, v in row.items()))
    return result


# How a crossover run names each local mode on its command line (``default``: fimflow picks).
CROSSOVER_MODES = {"in_process": ["--direct_running_mode=in_memory"],
                   "workers": ["--direct_running_mode=multi_processing", "--direct_num_workers=0"], "default": []}


def crossover(args, extra: list[str]) -> dict:
    """Whole-process ratio to the tokenizer library alone on all cores, for each size of ``--crossover``
    (MB of distinct real text, each the start of the next) and each local mode, every run a process of its
    own: where one process stops paying and worker processes start, and which the default picks."""
    cpus = sorted(os.sched_getaffinity(0))
    source, texts, total, sizes = distinct_texts(args.input), [], 0, []
    for mb in sorted(args.crossover):
        more, size = take_bytes(source, mb * 1e6 - total)
        texts, total = texts + more, total + size
        sizes.append((mb, texts, total))
    out = tempfile.mkdtemp(prefix="fimflow-crossover-")
    rows = []
    try:
        tokenizer = planned_tokenizer(write_jsonl(f"{out}/plan.jsonl", texts[:20]), args.tokenizer, extra)
        pinned_run(["--input", f"{out}/plan.jsonl", "--output", f"{out}/warmup", "--tokenizer", args.tokenizer],
                   cpus)
        for mb, corpus, size in sizes:
            path = write_jsonl(f"{out}/{mb}.jsonl", corpus)
            row = {"input_mb": round(size / 1e6, 1), "raw_seconds": round(raw_encoding(corpus, tokenizer,
                                                                                       len(cpus))[0], 2)}
            for mode, flags in CROSSOVER_MODES.items():
                seconds, peak, code, _ = pinned_run(
                    ["--input", path, "--output", f"{out}/out", "--overwrite", "--tokenizer", args.tokenizer,
                     "--context_length", str(args.context_length), "--fim_rate", "0.5", *flags, *extra], cpus)
                row[f"{mode}_seconds"] = round(seconds, 2)
                row[f"{mode}_ratio"] = round(row["raw_seconds"] / seconds, 3) if code == 0 else None
                row[f"{mode}_peak_rss_mb"] = round(peak / 2**20)
            rows.append(row)
            print("  ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"cores": len(cpus), "rows": rows}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", action="append", help="Corpus (default: the Python standard library).")
    parser.add_argument("--limit_mb", type=float, default=1000.0, help="Use at most this much of the corpus.")
    parser.add_argument("--mode", choices=("default", "in_process", "multi_processing"), default="default",
                        help="default: no running-mode flag, as a user runs it (fimflow picks the mode).")
    parser.add_argument("--scaling", action="store_true",
                        help="Instead: each fimflow run as its own process on 1, 2 and all cores, on a 1x "
                             "(--limit_mb) and a 3x corpus of distinct real text; ratios whole and steady, and "
                             "peak memory at both sizes.")
    parser.add_argument("--cores", type=lambda v: [int(n) for n in v.split(",")], default=None,
                        help="With --scaling: the core counts to measure, e.g. 2 or 1,2,16 (default 1, 2 and all).")
    parser.add_argument("--crossover", type=lambda v: [float(n) for n in v.split(",")], default=None,
                        help="Instead: for each of these sizes (MB of distinct real text, e.g. 4,8,16,31.5), "
                             "the whole-process ratio of each local mode (one process, a worker process per "
                             "core, the default's pick), each run a process of its own on all cores.")
    parser.add_argument("--near_dedup", action="store_true",
                        help="Also run each round with --dedup near right after the --dedup exact run: the time "
                             "ratio near/exact and the extra bytes it shuffles per input byte.")
    parser.add_argument("--tokenizer", default=defaults.bundled_tokenizer_path())
    parser.add_argument("--context_length", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=1,
                        help="Rounds of (raw, pipeline); the ratio is the median of the rounds' ratios, "
                             "which a shared, noisy machine needs.")
    args, extra = parser.parse_known_args(argv)
    if args.scaling:
        return scaling(args, extra)
    if args.crossover:
        return crossover(args, extra)
    texts = load_corpus(corpus_files(args.input, int(args.limit_mb * 1e6)))
    size = sum(len(t.encode("utf-8")) for t in texts)
    out = tempfile.mkdtemp(prefix="fimflow-bench-")
    # One JSONL file holds exactly the measured texts, so both runs see the same corpus.
    corpus = f"{out}/corpus.jsonl"
    with open(corpus, "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"content": t}) + "\n" for t in texts)
    with open(f"{out}/warmup.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"content": t}) + "\n" for t in texts[:20])
    tokenizer = planned_tokenizer(corpus, args.tokenizer, extra)
    runner = {"default": [], "in_process": ["--direct_running_mode=in_memory"],
              "multi_processing": ["--direct_running_mode=multi_processing",
                                   f"--direct_num_workers={available_cores()}"]}[args.mode]

    def run_args(path: str, output: str) -> list[str]:
        return ["--input", path, "--output", f"{out}/{output}", "--tokenizer", args.tokenizer,
                "--context_length", str(args.context_length), "--fim_rate", "0.5", *runner, *extra]

    def run_pipeline(path: str, output: str, *more: str) -> int:
        return fimflow(["run", *run_args(path, output), *more])

    near_rounds = []

    rounds = []
    try:
        with PeakMemory() as memory:
            start = time.perf_counter()
            if run_pipeline(f"{out}/warmup.jsonl", "warmup"):
                raise SystemExit("bench: the warm-up run of fimflow failed (its error is above)")
            startup_seconds = time.perf_counter() - start
            for index in range(args.repeat):
                # Each round measures the limit right before the pipeline, so both see the same load.
                raw_seconds, tokens = raw_encoding(texts, tokenizer, threads=available_cores())
                start, cpu_start = time.perf_counter(), _cpu_seconds()
                code = run_pipeline(corpus, f"data{index}")
                pipeline_seconds, pipeline_cpu = time.perf_counter() - start, _cpu_seconds() - cpu_start
                rounds.append((raw_seconds / pipeline_seconds, raw_seconds, pipeline_seconds, pipeline_cpu))
                if code:
                    break
                if args.near_dedup:
                    start = time.perf_counter()
                    if run_pipeline(corpus, f"near{index}", "--dedup", "near"):
                        raise SystemExit("bench: the --dedup near run failed (its error is above)")
                    near_seconds = time.perf_counter() - start
                    with open(f"{out}/near{index}/metadata.json") as f:
                        near = json.load(f)["dedup"]["near"]
                    near_rounds.append((near_seconds / pipeline_seconds, near_seconds, near))
            stages = stage_cpu_seconds(plan_run(PipelineOptions(run_args(corpus, "stages"))))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    output_bytes = stages.pop("output_bytes")
    ratio, raw_seconds, pipeline_seconds, pipeline_cpu = sorted(rounds)[len(rounds) // 2]
    result = {
        "documents": len(texts), "input_mb": round(size / 1e6, 2), "tokens": tokens,
        "tokenizer_backend": tokenizer.backend,
        "raw_tokenizer_mb_s": round(size / 1e6 / raw_seconds, 2),
        "pipeline_mb_s": round(size / 1e6 / pipeline_seconds, 2),
        "pipeline_tokens_s": round(tokens / pipeline_seconds),
        "ratio": round(ratio, 3),
        "ratios": [round(r[0], 3) for r in rounds],
        "pipeline_seconds": round(pipeline_seconds, 1), "mode": args.mode,
        "startup_seconds": round(startup_seconds, 1),
        "pipeline_cpu_seconds": round(pipeline_cpu, 1),
        "stage_cpu_seconds": stages,
        "other_cpu_seconds": round(pipeline_cpu - sum(stages.values()), 1),
        "output_bytes_per_input_byte": round(output_bytes / size, 2),
        "peak_rss_mb": round(memory.peak_bytes / 2**20),
        "progress_cpu_share_bound": f"{progress_cpu_share():.3%}", "exit_code": code,
    }
    if near_rounds:
        near_ratio, near_seconds, near = sorted(near_rounds, key=lambda r: r[0])[len(near_rounds) // 2]
        result.update({
            "near_dedup_seconds": round(near_seconds, 1), "near_over_exact_time": round(near_ratio, 3),
            "near_over_exact_times": [round(r[0], 3) for r in near_rounds],
            "near_shuffled_bytes_per_input_byte": round(near["shuffled_bytes_estimate"] / size, 3),
            "near_removed_documents": near["removed"], "near_clusters": near["clusters"]})
    for k, v in result.items():
        print(f"{k:24s} {v}")
    return result


if __name__ == "__main__":
    main()
