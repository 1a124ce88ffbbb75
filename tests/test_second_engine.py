"""Why fimflow has no second distributed engine yet: what Beam's own DaskRunner does with a pipeline like
fimflow's, on a real multi-process ``dask.distributed`` cluster started here.

Every fimflow stage is a ``ParDo`` with tagged outputs (its main output, dead letters, the per-bundle
counts it yields in ``finish_bundle``). Beam 2.77's ``DaskRunner`` keys its bags by transform, not by
output, so all tagged outputs of a ``ParDo`` arrive in every consumer, and it collects a bundle's
outputs before ``finish_bundle`` runs, so those are lost. The two tests below state the behaviour fimflow
needs and are expected to fail (strict): when a Beam release fixes either, its test passes, fails the
suite, and says it is time to run fimflow on Dask (README, Distributed engines). Flink and Spark need
Beam's job-server jars, which no package registry here serves.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import apache_beam as beam
import pytest

from pipeline.cli import main

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as local:
        yield local.scheduler_address
        # The DaskRunner leaves its client connected; closed before the cluster, it does not retry.
        try:
            distributed.default_client().close()
        except ValueError:  # no client was made
            pass


def run_on_dask(address: str, build) -> None:
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.dask.dask_runner import DaskRunner

    pipeline = beam.Pipeline(runner=DaskRunner(), options=PipelineOptions([f"--dask_client_address={address}"]))
    build(pipeline)
    pipeline.run().wait_until_finish()


def written(folder: Path) -> list:
    return sorted(json.loads(line) for path in folder.glob("*.jsonl") for line in path.read_text().splitlines())


class _WriteEach(beam.DoFn):
    """Writes each element to a file of its own under ``folder``: what the test reads back."""

    def __init__(self, folder: str):
        self._folder = folder

    def process(self, element):
        Path(self._folder, f"{uuid.uuid4().hex}.jsonl").write_text(json.dumps(element) + "\n")


class _SplitEvenOdd(beam.DoFn):
    def process(self, n):
        yield n if n % 2 == 0 else beam.pvalue.TaggedOutput("odd", n)

    def finish_bundle(self):
        from apache_beam.transforms.window import GlobalWindows

        yield beam.pvalue.TaggedOutput("bundles", GlobalWindows.windowed_value("bundle"))


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="Beam 2.77 DaskRunner: every tagged output of a ParDo reaches every consumer")
def test_dask_runner_keeps_tagged_outputs_apart(cluster, tmp_path):
    even, odd = tmp_path / "even", tmp_path / "odd"
    even.mkdir(), odd.mkdir()

    def build(p):
        outputs = p | beam.Create(range(10)) | beam.ParDo(_SplitEvenOdd()).with_outputs("odd", "bundles", main="even")
        _ = outputs.even | "Even" >> beam.ParDo(_WriteEach(str(even)))
        _ = outputs.odd | "Odd" >> beam.ParDo(_WriteEach(str(odd)))

    run_on_dask(cluster, build)
    assert (written(even), written(odd)) == ([0, 2, 4, 6, 8], [1, 3, 5, 7, 9])


@pytest.mark.slow
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="Beam 2.77 DaskRunner: outputs of finish_bundle are dropped")
def test_dask_runner_delivers_what_finish_bundle_yields(cluster, tmp_path):
    class CountInBundle(beam.DoFn):
        def start_bundle(self):
            self._n = 0

        def process(self, n):
            self._n += 1

        def finish_bundle(self):
            from apache_beam.transforms.window import GlobalWindows

            yield GlobalWindows.windowed_value(self._n)

    def build(p):
        _ = p | beam.Create(range(10)) | beam.ParDo(CountInBundle()) | beam.ParDo(_WriteEach(str(tmp_path)))

    run_on_dask(cluster, build)
    assert sum(written(tmp_path)) == 10


def test_fimflow_checks_its_flags_with_beams_dask_options_loaded(capsys):
    """Loading Beam's DaskOptions (a mutually exclusive group of flags) must not break the flag check."""
    import apache_beam.runners.dask.dask_runner  # noqa: F401

    assert main(["run", "--context_length", "2"]) == 2
    assert "--context_length=2 is too small" in capsys.readouterr().err
