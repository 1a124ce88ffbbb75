"""Progress of a local run: shown while it runs, adding up to what metadata.json reports, silent on request."""

from __future__ import annotations

import io
import json
import logging
import os

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipeline.build import FimflowPipeline
from pipeline.plan import plan_run
from pipeline.progress import Progress, share_done
from tests.corpora import stdlib_sources
from transforms.stats import PROGRESS_DIR_ENV


def run_with_progress(tmp_path, code_model_path, **progress_options):
    tmp_path.mkdir(exist_ok=True)
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"content": s}) + "\n" for s in stdlib_sources(1_500_000, seed=3)))
    plan = plan_run(PipelineOptions(["--input", str(corpus), "--output", str(tmp_path / "out"),
                                     "--tokenizer", code_model_path, "--context_length", "256"]))
    with Progress(plan.input_bytes, plan.fim.context_length, **progress_options) as progress:
        p = TestPipeline()
        _ = p | FimflowPipeline(plan)
        p.run().wait_until_finish()
        totals = progress.totals() if progress.directory else None
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    return plan, totals, metadata


def test_a_live_line_shows_the_run_and_its_final_counts_are_the_datasets(tmp_path, code_model_path):
    stream = io.StringIO()
    plan, totals, metadata = run_with_progress(tmp_path, code_model_path, stream=stream, interactive=True,
                                               refresh_seconds=0.02)
    counts = metadata["counts"]
    for name in ("documents", "document_tokens", "examples", "bytes_read", "text_chars_tokenized"):
        assert totals[name] == counts[name], name
    assert share_done(totals, plan.input_bytes, plan.fim.context_length) == 1.0
    lines = [line for line in stream.getvalue().split("\r\033[K") if line]
    assert len(lines) >= 3 and all(line.startswith("fimflow: ") for line in lines)
    assert any("tokenize" in line for line in lines) and "ETA" in lines[-1] and "MB/s" in lines[-1]
    # The live line is cleared at the end, and the processes' files are gone.
    assert stream.getvalue().endswith("\r\033[K") and PROGRESS_DIR_ENV not in os.environ


def test_off_a_terminal_progress_is_log_lines_and_quiet_is_silent(tmp_path, code_model_path, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.progress")
    run_with_progress(tmp_path / "a", code_model_path, interactive=False, log_every_seconds=0.05)
    assert any(r.getMessage().startswith("fimflow: ") and "documents" in r.getMessage() for r in caplog.records)
    caplog.clear()
    stream = io.StringIO()
    _, totals, _ = run_with_progress(tmp_path / "b", code_model_path, quiet=True, stream=stream, interactive=True,
                                     refresh_seconds=0.02)
    assert totals is None and stream.getvalue() == ""
    assert not [r for r in caplog.records if r.name == "pipeline.progress"]
