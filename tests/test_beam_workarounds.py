"""The Beam internals fimflow relies on, where Beam has no public way: each fails here, loudly, if an upgrade removes it."""

from __future__ import annotations

import gzip
import threading

import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from tests import emulator_auth
from transforms import beam_workarounds


def test_beam_keeps_its_credentials_state_where_the_tests_emulator_workaround_sets_it():
    from apache_beam.internal.gcp import auth

    assert isinstance(auth._Credentials._credentials_lock, type(threading.Lock()))
    assert hasattr(auth._Credentials, "_credentials") and hasattr(auth._Credentials, "_credentials_init")
    saved = auth._Credentials._credentials, auth._Credentials._credentials_init
    try:
        emulator_auth.connect_anonymously(auth)
        assert auth._Credentials.get_service_credentials(None) is None
    finally:
        auth._Credentials._credentials, auth._Credentials._credentials_init = saved


def test_a_process_the_tests_start_connects_anonymously_as_it_imports_beam(tmp_path):
    """Through tests/startup/sitecustomize.py, with no call in fimflow's code: a process that never imports
    Beam does not import it for this, and one that does finds its credentials look-up answered at once."""
    import os
    import subprocess
    import sys

    script = ("import sys; assert 'apache_beam' not in sys.modules; "
              "from apache_beam.internal.gcp import auth; "
              "print(auth._Credentials._credentials_init, auth._Credentials._credentials)")
    env = {**os.environ, emulator_auth.EMULATOR_ENV: "http://127.0.0.1:1"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "None"]


@pytest.mark.parametrize("cut", [True, False])
def test_beams_decompressing_reader_still_exposes_whether_the_stream_ended(tmp_path, cut):
    data = gzip.compress(b"x = 1\n" * 10_000)
    path = tmp_path / "a.txt.gz"
    path.write_bytes(data[:len(data) // 2] if cut else data)
    with FileSystems.open(str(path), compression_type=CompressionTypes.AUTO) as f:
        # Beam reads a truncated stream to its cut without an error: that is the problem.
        assert len(f.read()) > 0
        assert hasattr(f, "_decompressor"), "Beam's CompressedFile lost _decompressor"
        if cut:
            with pytest.raises(EOFError, match="truncated"):
                beam_workarounds.check_decompressed_to_the_end(f)
        else:
            beam_workarounds.check_decompressed_to_the_end(f)


def test_a_local_run_with_worker_processes_runs_them_as_fimflow_local_workers(tmp_path, caplog):
    """The FnApiRunner must keep taking the environment it is given for ``in_memory`` with N workers
    (``pipeline.cli.local_runner_for``): else every local run with workers would quietly go back to
    Beam's own worker, whose interpreter teardown the run waits for, one worker after the other."""
    import os
    import types

    import apache_beam as beam
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.cli import local_runner_for

    options = PipelineOptions(["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    runner = local_runner_for(options, types.SimpleNamespace(local_workers=2))
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    out = tmp_path / "seen"

    def where(_):
        with open("/proc/self/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode()
        return f"{os.getpid()} {command}"

    with caplog.at_level("WARNING"):
        with beam.Pipeline(runner=runner, options=options) as p:
            _ = (p | beam.Create(range(64)) | beam.Reshuffle() | beam.Map(where)
                 | beam.io.WriteToText(str(out), shard_name_template=""))
    seen = set(out.read_text().splitlines())
    assert seen and all("from pipeline.local_worker import main; main()" in line for line in seen), seen
    assert str(os.getpid()) not in {line.split()[0] for line in seen}
    assert not [r for r in caplog.records if beam_workarounds._IN_MEMORY_WORKERS_WARNING in r.getMessage()]


def test_a_run_that_names_one_process_keeps_beams_own_runner_setup():
    import types

    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    from pipeline.cli import local_runner_for

    options = PipelineOptions(["--direct_running_mode=in_memory"])
    local_runner_for(options, types.SimpleNamespace(local_workers=0))
    assert options.view_as(DirectOptions).direct_running_mode == "in_memory"
    assert options.view_as(DirectOptions).direct_num_workers == 1
