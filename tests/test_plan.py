"""plan_run: checks and decisions, for a given Machine, without changing the options it reads."""

from __future__ import annotations

import json

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

from pipeline import cli
from pipeline.flags import UsageError
from pipeline.machine import (LOCAL_BASE_MEMORY_BYTES, LOCAL_ONE_PROCESS_MAX_CORES, LOCAL_WORKERS_MIN_TEXT_BYTES,
                              Machine, available_cores, available_memory, local_memory_need)
from pipeline.plan import plan_run


@pytest.fixture
def corpus(tmp_path):
    """A JSONL file of ``size`` bytes; only its size matters to planning."""
    def make(size: int):
        line = json.dumps({"content": "x = 1\n" * 100}) + "\n"
        path = tmp_path / f"c{size}.jsonl"
        path.write_text(line * (size // len(line) + 1))
        return path
    return make


def _plan(path, model, *flags, machine=None, pick=True):
    argv = ["--input", str(path), "--output", str(path.parent / "out"), "--tokenizer", model, *flags]
    return plan_run(PipelineOptions(argv), pick_local_mode=pick, machine=machine)


def test_this_machine_is_read_from_its_affinity_and_meminfo():
    this = Machine.this()
    assert this.cores == available_cores() >= 1 and this.available_memory == available_memory() > 0


def test_plan_run_changes_none_of_the_options_it_reads(corpus, code_model_path):
    argv = ["--input", str(corpus(LOCAL_WORKERS_MIN_TEXT_BYTES)), "--output", "/tmp/unused-out",
            "--tokenizer", code_model_path]
    options = PipelineOptions(argv)
    before = options.get_all_options()
    plan = plan_run(options, pick_local_mode=True, machine=Machine(4))
    assert plan.local_workers == 4
    assert options.get_all_options() == before
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"


def test_a_local_run_picks_its_mode_from_cores_size_and_memory(corpus, code_model_path):
    small, big = corpus(LOCAL_WORKERS_MIN_TEXT_BYTES // 4), corpus(LOCAL_WORKERS_MIN_TEXT_BYTES)
    size = big.stat().st_size

    def workers(path, machine):
        plan = _plan(path, code_model_path, machine=machine)
        chosen = cli.beam_options([], plan).view_as(DirectOptions)
        # What the plan chose is what the runner is told.
        assert chosen.direct_running_mode == ("multi_processing" if plan.local_workers else "in_memory")
        assert not plan.local_workers or chosen.direct_num_workers == plan.local_workers
        return plan.local_workers

    assert workers(small, Machine(16)) == 0
    assert workers(big, Machine(16)) == 16
    # As many workers as the memory left after the text holds, and none below two.
    assert workers(big, Machine(16, local_memory_need(size, 5) + 1)) == 5
    assert workers(big, Machine(16, local_memory_need(size, 1))) == 0
    assert workers(big, Machine(1)) == 0
    # Up to LOCAL_ONE_PROCESS_MAX_CORES cores one process is faster at every size measured.
    assert workers(big, Machine(LOCAL_ONE_PROCESS_MAX_CORES)) == 0
    assert workers(big, Machine(LOCAL_ONE_PROCESS_MAX_CORES + 1)) == LOCAL_ONE_PROCESS_MAX_CORES + 1
    # A mode the command line names is what runs, and fimflow adds nothing for the runner.
    named = _plan(big, code_model_path, "--direct_running_mode=in_memory", machine=Machine(16), pick=False)
    assert named.local_workers == 0 and named.runner_flags == ()
    named = _plan(small, code_model_path, "--direct_running_mode=multi_processing", "--direct_num_workers=3",
                  machine=Machine(16), pick=False)
    assert named.local_workers == 3 and named.runner_flags == () and named.tokenizer_processes == 1


def test_tokenizer_processes_and_threads_default_to_every_core_only_in_one_process(corpus, code_model_path):
    path = corpus(1 << 16)
    in_process = _plan(path, code_model_path, machine=Machine(4))
    assert (in_process.tokenizer_processes, in_process.tokenizer_threads) == (4, 1)
    one = _plan(path, code_model_path, "--tokenizer_processes", "1", machine=Machine(4))
    assert (one.tokenizer_processes, one.tokenizer_threads) == (1, 4)
    for flags in (["--direct_running_mode=multi_processing"], ["--runner=DataflowRunner", "--setup_file=x"]):
        elsewhere = _plan(path, code_model_path, *flags, machine=Machine(4), pick=False)
        assert (elsewhere.tokenizer_processes, elsewhere.tokenizer_threads) == (1, 1), flags


def test_a_run_in_one_process_starts_no_more_tokenizer_helpers_than_memory_holds(corpus, code_model_path):
    path = corpus(1 << 20)
    size = path.stat().st_size
    for room, processes in ((None, 16), (2, 3), (0, 1)):
        available = None if room is None else local_memory_need(size, room) + 1
        assert _plan(path, code_model_path, machine=Machine(16, available)).tokenizer_processes == processes


def test_a_local_run_too_big_for_the_machines_memory_is_refused_with_what_to_do(corpus, code_model_path):
    path = corpus(5_000_000)
    # 2 MiB available past the runner's fixed part: room for 1 MiB of text.
    machine = Machine(2, LOCAL_BASE_MEMORY_BYTES + (2 << 20))
    with pytest.raises(UsageError) as refused:
        _plan(path, code_model_path, "--tokenizer_processes", "1", machine=machine)
    message = str(refused.value)
    assert message.startswith("about 5 MB of text needs about 0.3 GB") and "Dataflow" in message
    assert "in parts of at most 1 MB of text" in message and "--memory_check=false" in message
    assert "\n" not in message
    assert _plan(path, code_model_path, "--tokenizer_processes", "1", "--memory_check=false",
                 machine=machine).tokenizer_processes == 1


def test_the_cli_refuses_a_run_too_big_for_this_machine_before_writing_anything(tmp_path, code_model_path,
                                                                                 capsys):
    corpus = tmp_path / "a.jsonl"
    # Larger than any machine's memory would hold at 2 bytes per byte: a sparse file, planned by its size.
    with open(corpus, "wb") as f:
        f.truncate((available_memory() or 1 << 40) // 2 + (1 << 30))
    assert cli.main(["run", "--input", str(corpus), "--output", str(tmp_path / "out"), "--tokenizer",
                     code_model_path, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("fimflow run: error: about ") and "--memory_check=false" in err and "\n" not in err
    assert not (tmp_path / "out").exists()
