"""Faults injected into real runs: every record is a document, a dead letter, or the run fails loudly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from apache_beam.io.filesystem import FileMetadata, MatchResult
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.cli import main
from pipeline.inspect_dataset import iter_examples
from pipeline.plan import plan_run, resolve_inputs
from transforms.read import InputChangedError, ReadRangeStep, RecordReader, StorageError
from transforms.schema import FileRange


class _FailingStream:
    """A local file whose reads raise ConnectionResetError once ``fail_after`` bytes were read."""

    def __init__(self, path: str, fail_after: int):
        self._file = open(path, "rb")
        self._left = fail_after

    def _take(self, data: bytes) -> bytes:
        if len(data) > self._left:
            raise ConnectionResetError("connection reset by peer (injected)")
        self._left -= len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        return self._take(self._file.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._take(self._file.readline(size))

    def close(self):
        self._file.close()


class FaultyFileSystem(LocalFileSystem):
    """``faulty://LOCAL_PATH``: the local file through Beam's filesystem layer, failing mid-read."""

    fail_after = 0
    match_error = None

    @classmethod
    def scheme(cls):
        return "faulty"

    def match(self, patterns, limits=None):
        if self.match_error is not None:
            raise self.match_error
        results = super().match([p[len("faulty://"):] for p in patterns], limits)
        return [MatchResult("faulty://" + r.pattern,
                            [FileMetadata("faulty://" + m.path, m.size_in_bytes, m.last_updated_in_seconds)
                             for m in r.metadata_list]) for r in results]

    def open(self, path, mime_type="application/octet-stream", compression_type=None):
        return _FailingStream(path[len("faulty://"):], self.fail_after)



def good_lines(n: int, start: int = 0) -> list[str]:
    return [json.dumps({"content": f"def f{i}(x):\n    return x + {i}\n"}) for i in range(start, start + n)]


def test_a_storage_error_mid_file_fails_the_run_instead_of_losing_the_rest(tmp_path, code_model_path, capsys):
    lines = good_lines(300)
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(lines) + "\n")
    FaultyFileSystem.fail_after = len("\n".join(lines[:100]) + "\n") + 5
    out = tmp_path / "out"
    code = main(["run", "--input", f"faulty://{path}", "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "64"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"reading faulty://{path} failed after 100 record(s) from byte 0: ConnectionResetError" in err
    assert not (out / "metadata.json").exists()
    # The same file read in full is fine: the fault, not the data, failed the run.
    FaultyFileSystem.fail_after = 1 << 30
    assert main(["run", "--input", f"faulty://{path}", "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "64"]) == 0
    assert json.loads((out / "metadata.json").read_text())["counts"]["documents"] == 300


def test_the_reader_tells_a_storage_fault_from_broken_content(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text("\n".join(good_lines(50)) + "\n")
    FaultyFileSystem.fail_after = 100
    with pytest.raises(StorageError, match="ConnectionResetError"):
        list(RecordReader().read(f"faulty://{path}"))


def test_a_line_that_breaks_the_json_parser_is_one_dead_letter_not_the_rest_of_the_file(tmp_path):
    path = tmp_path / "a.jsonl"
    lines = good_lines(1) + ['{"content": "x", "n": ' + "7" * 5000 + "}", "[" * 100_000] + good_lines(100, 1)
    path.write_text("\n".join(lines) + "\n")
    records = list(RecordReader().read(str(path)))
    assert len(records) == 103
    at = [len("\n".join(lines[:i])) + 1 for i in (1, 2)]
    assert [(r.position, r.reason) for r in records if hasattr(r, "reason")] == [(at[0], "invalid_json"),
                                                                                (at[1], "invalid_json")]
    assert "ValueError" in records[1].detail and "RecursionError" in records[2].detail


@pytest.mark.parametrize("change", ["delete", "truncate", "grow", "replace"])
def test_an_input_changed_after_planning_fails_the_run(tmp_path, code_model_path, change):
    src = tmp_path / "in"
    src.mkdir()
    path = src / "a.jsonl"
    path.write_text("\n".join(good_lines(200)) + "\n")
    (src / "b.jsonl").write_text("\n".join(good_lines(10, 500)) + "\n")
    (planned,) = [f for f in resolve_inputs([str(src)]) if f.path.endswith("a.jsonl")]
    text = path.read_text()
    if change == "delete":
        path.unlink()
    elif change == "truncate":
        path.write_text(text[:text.index("\n", len(text) // 2) + 1])
    elif change == "grow":
        path.write_text(text + "\n".join(good_lines(5, 900)) + "\n")
    else:  # Same size, other content, a later modification time.
        path.write_text(text.replace("return", "yield!"))
        os.utime(path, (planned.mtime + 10, planned.mtime + 10))
    with pytest.raises(InputChangedError, match=str(path)):
        list(ReadRangeStep(RecordReader())(FileRange(planned), {}))


@pytest.mark.parametrize("change", ["delete", "add", "replace"])
def test_inputs_changed_between_planning_and_matching_on_the_workers_fail_the_whole_run(
        tmp_path, code_model_path, change):
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipeline.build import FimflowPipeline

    src = tmp_path / "in"
    src.mkdir()
    for name in "ab":
        (src / f"{name}.jsonl").write_text("\n".join(good_lines(20)) + "\n")
    plan = plan_run(PipelineOptions(["--input", str(src), "--output", str(tmp_path / "out"),
                                     "--tokenizer", code_model_path, "--context_length", "64"]))
    a = src / "a.jsonl"
    if change == "delete":
        a.unlink()
    elif change == "add":
        (src / "c.jsonl").write_text("\n".join(good_lines(3)) + "\n")
    else:  # Same size, same count: only the fingerprint tells.
        a.write_text(a.read_text().replace("return", "yield!"))
        os.utime(a, (a.stat().st_mtime + 10, a.stat().st_mtime + 10))
    p = TestPipeline()
    _ = p | FimflowPipeline(plan)
    with pytest.raises(Exception, match="the inputs changed between planning and reading: 2 file"):
        p.run().wait_until_finish()


def test_a_pattern_the_workers_cannot_list_fails_the_bundle_naming_it(tmp_path, code_model_path):
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipeline.build import FimflowPipeline

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text("\n".join(good_lines(20)) + "\n")
    pattern = f"faulty://{tmp_path}/in/*.jsonl"
    FaultyFileSystem.fail_after = 1 << 30
    plan = plan_run(PipelineOptions(["--input", pattern, "--output", str(tmp_path / "out"),
                                     "--tokenizer", code_model_path, "--context_length", "64"]))
    FaultyFileSystem.match_error = ConnectionResetError("connection reset by peer (injected)")
    try:
        p = TestPipeline()
        _ = p | FimflowPipeline(plan)
        with pytest.raises(Exception, match=re.escape(f"--input {pattern}: listing it failed on a worker (Connection")):
            p.run().wait_until_finish()
    finally:
        FaultyFileSystem.match_error = None
    assert not (tmp_path / "out" / "metadata.json").exists()
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_directory_inputs_follow_symlinks_once_and_never_open_special_files(tmp_path):
    root = tmp_path / "in"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.py").write_text("a = 1\n")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "b.py").write_text("b = 2\n")
    (root / "linked").symlink_to(other, target_is_directory=True)
    (root / "real" / "loop").symlink_to(root, target_is_directory=True)
    (root / "file_link.py").symlink_to(other / "b.py")
    (root / "broken.py").symlink_to(tmp_path / "missing.py")
    os.mkfifo(root / "pipe.jsonl")
    paths = [Path(f.path).relative_to(root).as_posix() for f in resolve_inputs([str(root)])]
    assert paths == ["file_link.py", "linked/b.py", "real/a.py"]


def test_a_tokenizer_replaced_after_planning_fails_the_run(tmp_path, code_model_path, llama_model_bytes):
    import shutil

    from apache_beam.testing.test_pipeline import TestPipeline

    from pipeline.build import FimflowPipeline

    model = tmp_path / "model.model"
    shutil.copy(code_model_path, model)
    (tmp_path / "a.jsonl").write_text("\n".join(good_lines(20)) + "\n")
    plan = plan_run(PipelineOptions(["--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"),
                                     "--tokenizer", str(model), "--context_length", "64"]))
    model.write_bytes(llama_model_bytes)
    p = TestPipeline()
    _ = p | FimflowPipeline(plan)
    with pytest.raises(Exception, match="changed after the run was planned: sha256"):
        p.run().wait_until_finish()
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_a_model_file_cut_between_two_pieces_is_refused(tmp_path, code_model_bytes, capsys):
    from sentencepiece import sentencepiece_model_pb2 as model_pb2

    proto = model_pb2.ModelProto.FromString(code_model_bytes)
    cut = model_pb2.ModelProto(pieces=proto.pieces[:1500]).SerializeToString()
    # Exactly a prefix of the file: what a copy that stopped early leaves.
    assert code_model_bytes.startswith(cut) and len(model_pb2.ModelProto.FromString(cut).pieces) == 1500
    (tmp_path / "cut.model").write_bytes(cut)
    (tmp_path / "a.jsonl").write_text("\n".join(good_lines(5)) + "\n")
    assert main(["run", "--input", str(tmp_path / "a.jsonl"), "--output", str(tmp_path / "out"),
                 "--tokenizer", str(tmp_path / "cut.model")]) == 2
    err = capsys.readouterr().err
    assert "the model file is incomplete" in err and len(err.strip().splitlines()) == 1


def test_dashed_flags_are_aliases_and_metadata_records_no_beam_secret(tmp_path, code_model_path):
    (tmp_path / "a.jsonl").write_text("\n".join(good_lines(30)) + "\n")
    out = tmp_path / "out"
    assert main(["run", "--input", str(tmp_path / "a.jsonl"), "--output", str(out), "--tokenizer", code_model_path,
                 "--context-length", "96", "--fim-rate=0.3", "--s3_secret_access_key=TOP-SECRET-KEY"]) == 0
    text = (out / "metadata.json").read_text()
    metadata = json.loads(text)
    assert metadata["context_length"] == 96 and metadata["fim"]["rate"] == 0.3
    assert "TOP-SECRET" not in text and "s3_secret_access_key" not in metadata["options"]
    assert metadata["options"]["runner"] == "DirectRunner" and metadata["options"]["context_length"] == 96


def test_the_command_line_check_keeps_beams_flags_and_refuses_what_beam_would_drop():
    from pipeline.argv import checked_argv
    from pipeline.flags import UsageError

    beam_flags = ["--runner", "DirectRunner", "--direct_num_workers=2", "--experiments", "use_runner_v2",
                  "--overwrite", "--seed", "-5", "--word_cache=false"]
    assert checked_argv(beam_flags) == beam_flags
    assert checked_argv(["--fim-span-unit", "line"]) == ["--fim_span_unit", "line"]
    for argv, message in ((["stray"], "unexpected argument 'stray'"), (["-x"], "unknown option -x"),
                          (["--context_len", "5"], "unknown option --context_len")):
        with pytest.raises(UsageError, match=message):
            checked_argv(argv)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: a disk that fills up while the dataset is written."""

    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    if result.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_disk_that_fills_up_leaves_no_file_under_a_final_name_that_is_not_whole(tmp_path, small_disk,
                                                                                 code_model_path, capsys):
    (tmp_path / "a.jsonl").write_text("\n".join(good_lines(3000)) + "\n")
    out = small_disk / "out"
    assert main(["run", "--input", str(tmp_path / "a.jsonl"), "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "256", "--num_shards", "4"]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert not (out / "metadata.json").exists()
    finished = sorted(out.glob("train-*.tfrecord"))
    assert len(finished) < 4 and not list(out.glob(".tmp-*"))
    # What did land under a final name reads back whole, checksums and all.
    import tensorflow as tf

    for shard in finished:
        assert sum(1 for _ in tf.data.TFRecordDataset(str(shard))) > 0


def test_a_file_cut_short_counts_its_bytes_against_the_error_budget(tmp_path, code_model_path, capsys):
    import gzip

    big = gzip.compress(("\n".join(good_lines(20_000)) + "\n").encode())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "big.jsonl.gz").write_bytes(big[:len(big) // 50])
    (tmp_path / "in" / "ok.jsonl").write_text("\n".join(good_lines(400)) + "\n")
    # One unreadable_file record among hundreds is within a 1% record budget; its bytes are not.
    assert main(["run", "--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"),
                 "--tokenizer", code_model_path, "--context_length", "64"]) == 1
    err = capsys.readouterr().err
    assert "input bytes are in files that could not be read to the end" in err
    assert not (tmp_path / "out" / "metadata.json").exists()


def _tiny_corpus(tmp_path) -> Path:
    path = tmp_path / "tiny.jsonl"
    path.write_text("\n".join(good_lines(20)) + "\n")
    return path


@pytest.mark.parametrize("where", ["local", "gs"])
def test_a_second_writer_on_the_same_output_is_refused_before_it_writes(request, tmp_path, code_model_path,
                                                                        capsys, where):
    from transforms.output_lock import OutputLock

    output = str(tmp_path / "out") if where == "local" else request.getfixturevalue("gcs").url("busy")
    first = OutputLock(output).acquire()
    try:
        code = main(["run", "--input", str(_tiny_corpus(tmp_path)), "--output", output,
                     "--tokenizer", code_model_path, "--context_length", "64"])
        err = capsys.readouterr().err
        assert code == 2 and f"is being written by another run (id {first.run_id}" in err
        assert len(err.strip().splitlines()) == 1
    finally:
        first.release()
    assert main(["run", "--input", str(_tiny_corpus(tmp_path)), "--output", output,
                 "--tokenizer", code_model_path, "--context_length", "64"]) == 0


def test_a_lock_left_by_a_dead_process_is_taken_over(tmp_path, code_model_path):
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out = tmp_path / "out"
    out.mkdir()
    (out / ".fimflow-run.lock").write_text(json.dumps({"run_id": "old", "host": socket.gethostname(),
                                                       "pid": int(dead.stdout)}))
    assert main(["run", "--input", str(_tiny_corpus(tmp_path)), "--output", str(out),
                 "--tokenizer", code_model_path, "--context_length", "64"]) == 0
    assert (out / "metadata.json").exists() and not (out / ".fimflow-run.lock").exists()


def test_metadata_is_not_written_when_another_run_took_the_output(tmp_path, code_model_path):
    from apache_beam.testing.test_pipeline import TestPipeline

    from pipeline.build import FimflowPipeline
    from transforms.output_lock import OutputLock

    plan = plan_run(PipelineOptions(["--input", str(_tiny_corpus(tmp_path)), "--output", str(tmp_path / "out"),
                                     "--tokenizer", code_model_path, "--context_length", "64"]))
    other = OutputLock(plan.output).acquire()
    p = TestPipeline()
    _ = p | FimflowPipeline(plan, run_id="this-run")
    with pytest.raises(Exception, match="no longer holds"):
        p.run().wait_until_finish()
    other.release()
    assert not (tmp_path / "out" / "metadata.json").exists()


def test_an_unwritable_output_fails_in_one_line_before_the_pipeline(tmp_path, code_model_path, capsys, gcs):
    locked = tmp_path / "ro"
    locked.mkdir()
    (locked / "out").write_text("a file where a folder should be")
    for output in (str(locked / "out"), "gs://no-such-bucket-here/out"):
        code = main(["run", "--input", str(_tiny_corpus(tmp_path)), "--output", output,
                     "--tokenizer", code_model_path, "--context_length", "64"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and f"cannot write to {output}" in err and len(err.splitlines()) == 1, err


def test_an_output_inside_an_input_directory_is_refused(tmp_path, code_model_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.py").write_text("a = 1\n")
    for inputs in ([str(src)], [str(src / "**")]):
        args = [x for i in inputs for x in ("--input", i)]
        assert main(["run", *args, "--output", str(src / "out"), "--tokenizer", code_model_path]) == 2
        assert "the run would read its own output" in capsys.readouterr().err
    assert not (src / "out").exists()


def run_in_background(argv: list[str], tmp_path: Path, **popen) -> subprocess.Popen:
    """``fimflow ARGV`` in a process of its own, its temporary files (progress among them) in ``tmp_path/tmp``."""
    (tmp_path / "tmp").mkdir()
    return subprocess.Popen([sys.executable, "-m", "pipeline", *argv], stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent,
                            env={**os.environ, "TMPDIR": str(tmp_path / "tmp")}, **popen)


def wait_until_tokenizing(process: subprocess.Popen, tmp_path: Path, timeout: float = 60) -> None:
    """Until a DoFn of the run reports tokenizing in its progress file (``pipeline/progress.py``): the run
    is in the middle of its work, with every worker process it starts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if any(b'"stage": "tokenize"' in path.read_bytes()
               for path in (tmp_path / "tmp").glob("fimflow-progress-*/*.jsonl")):
            return
        time.sleep(0.05)
    pytest.fail(f"the run reported no tokenizing (exit code {process.poll()})")


@pytest.mark.parametrize("mode", ["in_memory", "multi_processing"])
def test_ctrl_c_ends_the_run_with_one_line_and_exit_130(tmp_path, code_model_path, mode):
    """Also with SDK worker processes, whose runner threads would keep an ordinary exit waiting."""
    from pipeline.processes import descendants
    from tests.corpora import stdlib_sources

    corpus = tmp_path / "big.jsonl"
    corpus.write_text("".join(json.dumps({"content": d}) + "\n" for d in stdlib_sources(3_000_000) * 10))
    out = tmp_path / "out"
    process = run_in_background(["run", "--input", str(corpus), "--output", str(out), "--tokenizer",
                                 code_model_path, "--tokenizer_processes", "1", "--direct_running_mode", mode,
                                 "--direct_num_workers", "2"], tmp_path,
                                # A shell's background job starts with SIGINT ignored, and Python keeps
                                # it so: the run gets the terminal's default, as at a prompt.
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_until_tokenizing(process, tmp_path)
    started = descendants(process.pid)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=60)[1]
    lines = [line for line in err.strip().splitlines() if not line.startswith("WARNING: Location")]
    assert process.returncode == 130, err[-2000:]
    assert lines[-1] == "fimflow run: interrupted; no metadata.json written" and "Traceback" not in err
    assert not (out / "metadata.json").exists() and not (out / ".fimflow-run.lock").exists()
    assert started or mode == "in_memory"
    deadline = time.monotonic() + 10
    while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()], "a worker process outlived the run"


@pytest.mark.parametrize("flag, piece, message", [
    ("--fim_middle_token", "def", "is an ordinary text piece"),
    ("--fim_suffix_token", "<0x41>", "is a byte piece"),
    ("--fim_prefix_token", "<eot>", "fim_prefix and eot are the same piece '<eot>'"),
])
def test_special_tokens_that_would_change_tokenization_are_refused_saying_what_to_use(
        tmp_path, code_model_path, capsys, flag, piece, message):
    assert main(["run", "--input", str(_tiny_corpus(tmp_path)), "--output", str(tmp_path / "out"),
                 "--tokenizer", code_model_path, flag, piece]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "e.g. '<s>'" in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("pad", ["<unk>", "<eot>", "<0x41>", "def"])
def test_any_piece_may_pad_since_segment_ids_mark_padding(tmp_path, code_model_path, code_tokenizer, pad):
    """Models without a pad piece (Llama, Mistral) pad with EOS or any piece; text that contains the
    piece still encodes to it, and padding is exactly the positions with segment_ids == 0."""
    out, plain = tmp_path / "out", tmp_path / "plain"
    for path, extra in ((out, ["--pad_token", pad]), (plain, [])):
        assert main(["run", "--input", str(_tiny_corpus(tmp_path)), "--output", str(path), "--tokenizer",
                     code_model_path, "--context_length", "64", *extra]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    pad_id = code_tokenizer.document_encoder.piece_to_id(pad)
    assert metadata["special_tokens"]["pad"] == pad_id and metadata["special_pieces"]["pad"] == pad
    examples, plain_examples = (list(iter_examples(str(p))) for p in (out, plain))
    assert len(examples) == len(plain_examples) and any(0 in e["segment_ids"] for e in examples)
    for e, p in zip(examples, plain_examples):
        assert e["segment_ids"] == p["segment_ids"] and e["positions"] == p["positions"]
        padding = [i for i, s in enumerate(e["segment_ids"]) if s == 0]
        assert [e["input_ids"][i] for i in padding] == [pad_id] * len(padding)
        assert [t for t, s in zip(e["input_ids"], e["segment_ids"]) if s] == \
            [t for t, s in zip(p["input_ids"], p["segment_ids"]) if s]


def test_file_names_that_are_not_utf8_are_read_and_named_in_dead_letters(tmp_path, code_model_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.py").write_text("x = 1\n")
    os.close(os.open(os.path.join(os.fsencode(src), b"caf\xe9.py"), os.O_CREAT | os.O_WRONLY))  # empty
    with open(os.path.join(os.fsencode(src), b"da\xffta.py"), "w") as f:
        f.write("y = 2\n")
    out = tmp_path / "out"
    assert main(["run", "--input", str(src), "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "64"]) == 0
    assert json.loads((out / "metadata.json").read_text())["counts"]["documents"] == 2
    (line,) = (out / "errors" / "rejected-00000-of-00001.jsonl").read_bytes().splitlines()
    rejected = json.loads(line)
    assert rejected["reason"] == "empty_document"
    assert os.fsencode(rejected["source"]) == os.path.join(os.fsencode(src), b"caf\xe9.py")


def test_sigterm_ends_a_multi_processing_run_its_workers_and_its_lock(tmp_path, code_model_path):
    from tests.corpora import stdlib_sources

    corpus = tmp_path / "big.jsonl"
    corpus.write_text("".join(json.dumps({"content": d}) + "\n" for d in stdlib_sources(3_000_000) * 10))
    out = tmp_path / "out"
    process = run_in_background(["run", "--input", str(corpus), "--output", str(out), "--tokenizer",
                                 code_model_path, "--direct_running_mode=multi_processing",
                                 "--direct_num_workers=2"], tmp_path, start_new_session=True)
    try:
        wait_until_tokenizing(process, tmp_path)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 143
        # Every process of the run ends: Beam's SDK workers used to outlive the launcher for minutes.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("processes of the terminated run are still alive")
        assert "fimflow run: terminated; no metadata.json written" in process.stderr.read()
        assert not (out / ".fimflow-run.lock").exists() and not (out / "metadata.json").exists()
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_tokenizer_helper_fails_the_run_saying_so_and_writes_no_metadata(tmp_path, code_model_path):
    """One process with helper processes: the helper holding jobs is killed in the middle of the run."""
    from pipeline.processes import descendants
    from tests.corpora import stdlib_sources

    corpus = tmp_path / "big.jsonl"
    corpus.write_text("".join(json.dumps({"content": d}) + "\n" for d in stdlib_sources(3_000_000) * 10))
    out = tmp_path / "out"
    process = run_in_background(["run", "--input", str(corpus), "--output", str(out), "--tokenizer",
                                 code_model_path, "--direct_running_mode=in_memory", "--tokenizer_processes=2"],
                                tmp_path)
    wait_until_tokenizing(process, tmp_path)
    [helper] = [pid for pid in descendants(process.pid)
                if b"tokenizer_pool" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    os.kill(helper, signal.SIGKILL)
    err = process.communicate(timeout=120)[1]
    assert process.returncode == 1, err[-2000:]
    assert "tokenizer helper process exited with code -9" in err
    assert not (out / "metadata.json").exists() and not (out / ".fimflow-run.lock").exists()


def test_a_worker_missing_a_reader_library_fails_instead_of_rejecting_the_file(tmp_path, monkeypatch):
    """An environment without pyarrow is the image's fault: every Parquet file must not become a dead letter."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["x = 1\n"]}), tmp_path / "a.parquet")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ImportError):
        list(RecordReader().read(str(tmp_path / "a.parquet")))
