"""The README's promises: its commands, the default job, the CLI entry points."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import cli, defaults
from tests.checkout import ROOT, run_cli_without


def readme_commands() -> list[str]:
    return re.findall(r"```\n(python3 -m venv .*)\n```", (ROOT / "README.md").read_text())


def test_ci_runs_exactly_the_readme_test_command():
    install_and_run, install_and_test = readme_commands()
    assert install_and_run.endswith("fimflow run") and "pytest" in install_and_test
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd ", "command -v ", "    "))]
    # CI also installs Chromium and turns a missing tool into a failure instead of a skip.
    assert ci_lines == ["export FIMFLOW_REQUIRE_TOOLS=1", install_and_test]


def test_readme_documents_every_run_option():
    import argparse

    from pipeline.flags import FimflowOptions

    parser = argparse.ArgumentParser()
    FimflowOptions._add_argparse_args(parser)
    readme = (ROOT / "README.md").read_text()
    flags = [a.option_strings[0] for a in parser._actions if a.option_strings and a.dest != "help"]
    assert [f for f in flags if f"`{f}" not in readme] == []


def test_default_run_builds_a_dataset_in_fimflow_out_and_prints_a_summary(tmp_path, monkeypatch, capsys):
    # The default corpus is the whole standard library; a slice keeps the test fast.
    monkeypatch.setattr(defaults, "default_corpus", _stdlib_slice)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "--context_length", "512"]) == 0
    metadata = json.loads((tmp_path / defaults.DEFAULT_OUTPUT / "metadata.json").read_text())
    assert metadata["counts"]["documents"] > 0
    assert metadata["tokenizer"]["path"] == defaults.bundled_tokenizer_path()
    out = capsys.readouterr().out
    for word in ("documents", "tokens", "examples", "FIM", "MB/s", "tokens/s"):
        assert word in out


_ALL = defaults.default_corpus


def _stdlib_slice():
    everything = _ALL()
    return everything._replace(patterns=tuple(f"{everything.patterns[0]}/{name}" for name in ("json", "email")))


def test_default_corpus_is_the_standard_library_without_site_packages():
    from pipeline.plan import resolve_inputs

    files = resolve_inputs(*_ALL())
    assert len(files) > 500 and sum(f.size for f in files) > 10_000_000
    assert all(f.path.endswith(".py") and "site-packages" not in f.path for f in files)


def test_python_dash_m_pipeline_is_the_fimflow_command():
    result = subprocess.run([sys.executable, "-m", "pipeline", "run", "--context_length", "2"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "--context_length=2 is too small" in result.stderr


def test_the_fimflow_command_exits_at_once_with_its_output_flushed(tmp_path, code_model_path):
    """``console_main`` ends with ``os._exit``: what was printed to a pipe must still arrive, and the code
    must be main's. A run through the installed ``fimflow`` script, so the entry point is checked too; with
    stdout block-buffered, as it is for a pipe unless PYTHONUNBUFFERED says otherwise."""
    import os

    script = Path(sys.executable).with_name("fimflow")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    corpus = tmp_path / "in.jsonl"
    corpus.write_text("".join(json.dumps({"content": f"def f{i}(x):\n    return x + {i}\n"}) + "\n"
                              for i in range(40)))
    result = subprocess.run([str(script), "run", "--input", str(corpus), "--output", str(tmp_path / "out"),
                             "--tokenizer", str(code_model_path), "--context_length", "64", "--quiet"],
                            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("documents      40 (0 records rejected)") and "\ntime " in result.stdout
    assert (tmp_path / "out" / "metadata.json").exists()
    helped = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: fimflow")


def test_benchmark_runs_on_a_tiny_corpus():
    from bench import throughput

    result = throughput.main(["--limit_mb", "0.05", "--mode", "in_process", "--context_length", "256"])
    assert result["exit_code"] == 0 and result["tokens"] > 0
    assert 0 < result["ratio"] and result["raw_tokenizer_mb_s"] > 0 and result["tokenizer_backend"] == "sentencepiece"


def test_benchmark_measures_near_dedup_against_exact_dedup_in_the_same_run():
    from bench import throughput

    result = throughput.main(["--limit_mb", "0.05", "--mode", "in_process", "--context_length", "256",
                              "--near_dedup"])
    assert result["exit_code"] == 0 and result["near_over_exact_time"] > 0
    assert result["near_shuffled_bytes_per_input_byte"] > 1


def test_benchmark_measures_a_tokenizer_json_against_tokenizers_own_batch_encoding(family_tokenizer_paths):
    from bench import throughput

    result = throughput.main(["--limit_mb", "0.05", "--mode", "in_process", "--context_length", "256",
                              "--tokenizer", str(family_tokenizer_paths["starcoder"]), "--fim_format", "starcoder"])
    assert result["exit_code"] == 0 and result["tokens"] > 0 and result["tokenizer_backend"] == "huggingface"
    assert 0 < result["ratio"] and result["raw_tokenizer_mb_s"] > 0


@pytest.mark.slow
def test_the_scaling_benchmark_runs_on_a_tiny_corpus():
    from bench import throughput

    result = throughput.main(["--scaling", "--limit_mb", "0.1", "--context_length", "256"])
    assert result["input_mb_3x"] >= 2.5 * result["input_mb_1x"] > 0
    cores = result["cores_available"]
    assert [row["cores"] for row in result["rows"]] == sorted({n for n in (1, 2, cores) if n <= cores})
    for row in result["rows"]:
        assert row["exit_codes"] == [0, 0] and row["peak_rss_mb_3x"] > 0 and row["whole_ratio_3x"] > 0
        assert row["whole_ratio_1x"] > 0
    only = throughput.main(["--scaling", "--limit_mb", "0.1", "--context_length", "256", "--cores", "1"])
    assert [row["cores"] for row in only["rows"]] == [1]


@pytest.mark.slow
def test_the_crossover_benchmark_measures_every_local_mode_at_each_size():
    from bench import throughput

    result = throughput.main(["--crossover", "0.3,0.05", "--context_length", "256"])
    sizes = [row["input_mb"] for row in result["rows"]]
    assert len(sizes) == 2 and 0 < sizes[0] < sizes[1]
    for row in result["rows"]:
        for mode in throughput.CROSSOVER_MODES:
            assert row[f"{mode}_ratio"] > 0 and row[f"{mode}_peak_rss_mb"] > 0
    # One process, and a worker process per core beside the launcher.
    assert all(row["workers_peak_rss_mb"] > row["in_process_peak_rss_mb"] for row in result["rows"])


def test_run_needs_no_tensorflow(tmp_path, code_model_path):
    """Workers do not install TensorFlow: building a dataset must never import it."""
    corpus = tmp_path / "a.jsonl"
    corpus.write_text('{"content": "def f(x):\\n    return x\\n"}\n')
    result = run_cli_without(("tensorflow",), ["run", "--input", str(corpus), "--output", str(tmp_path / "out"),
                                               "--tokenizer", code_model_path, "--context_length", "64"])
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "out" / "metadata.json").exists()


def test_default_corpus_is_refused_on_a_remote_runner(capsys):
    assert cli.main(["run", "--runner", "DataflowRunner", "--sdk_container_image", "i", "--output", "gs://b/o"]) == 2
    assert "--input is required on this runner" in capsys.readouterr().err


def test_a_dataflow_run_without_an_image_or_setup_file_is_refused_before_anything_starts(capsys):
    """Beam's stock worker image lacks fimflow: every worker would fail after minutes of start-up."""
    assert cli.main(["run", "--runner", "DataflowRunner", "--input", "gs://b/*.jsonl", "--output", "gs://b/o"]) == 2
    assert "needs --sdk_container_image IMAGE" in capsys.readouterr().err


def test_train_tokenizer_command_writes_a_lossless_model_with_control_sentinels(tmp_path, capsys):
    from sentencepiece import sentencepiece_model_pb2

    from tests.corpora import MULTILINGUAL, stdlib_sources
    from transforms.core.sentencepiece_tokenizer import PieceType, SentencePieceTokenizer

    src = tmp_path / "src"
    src.mkdir()
    for i, text in enumerate(stdlib_sources(300_000, seed=2) + MULTILINGUAL):
        (src / f"f{i}.py").write_text(text)
    model = tmp_path / "code.model"
    assert cli.main(["train-tokenizer", "--input", str(src), "--output", str(model), "--vocab_size", "600"]) == 0
    assert "wrote" in capsys.readouterr().out
    tokenizer = SentencePieceTokenizer(model.read_bytes())
    proto = sentencepiece_model_pb2.ModelProto.FromString(model.read_bytes())
    assert proto.trainer_spec.vocab_size == 600
    for name in ("fim_prefix", "fim_middle", "fim_suffix", "pad"):
        assert proto.pieces[getattr(tokenizer.special, name)].type == PieceType.CONTROL
    text = "    def grüße():\n\treturn '🎉 <fim_middle>'  \n"
    assert tokenizer.surface(tokenizer.encode_documents([text])[0]) == text.encode()


def test_the_built_package_holds_every_module_and_the_bundled_model(tmp_path):
    """Workers install the wheel, not this checkout: a subpackage missing from setup.py fails only there."""
    import shutil
    import zipfile

    # From a clean copy: setuptools would reuse a build/ folder left in the checkout.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("fimflow-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for package in ("pipeline", "transforms")
               for p in (ROOT / package).rglob("*.py")}
    assert sources and sources <= names, sorted(sources - names)
    assert "pipeline/assets/fimflow-code-16k.model" in names


def test_local_runs_use_beams_python_runner_and_never_try_prism(tmp_path, code_model_path, caplog):
    """Beam's DirectRunner tries Prism first (downloading it where it can): fimflow pins what the tests run."""
    import logging

    corpus = tmp_path / "a.jsonl"
    corpus.write_text('{"content": "def f(x):\\n    return x\\n"}\n')
    caplog.set_level(logging.INFO)
    for extra in ([], ["--runner", "DirectRunner"]):
        assert cli.main(["run", "--input", str(corpus), "--output", str(tmp_path / "out"), "--overwrite",
                         "--tokenizer", code_model_path, "--context_length", "64", *extra]) == 0
    assert "Running pipeline with" not in caplog.text and "Prism" not in caplog.text


@pytest.mark.parametrize("argv, message", [
    (["--fim_span_unit", "word"], "--fim_span_unit 'word': choose one of char, line, token"),
    (["--context_length", "2k"], "--context_length '2k': not a whole number"),
    (["--fim_rate=half"], "--fim_rate 'half': not a number"),
    (["--overwrite=maybe"], "--overwrite 'maybe': not true or false"),
])
def test_a_bad_value_is_one_line_not_the_whole_usage(argv, message, capsys):
    assert cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"fimflow run: error: {message}"


def test_run_help_shows_a_line_of_help_and_the_default_of_every_option(capsys):
    import argparse

    from pipeline.flags import FimflowOptions

    assert cli.main(["run", "--help"]) == 0
    # Compared without whitespace: argparse wraps lines, also after a hyphen.
    text = re.sub(r"\s", "", capsys.readouterr().out)
    parser = argparse.ArgumentParser()
    FimflowOptions._add_argparse_args(parser)
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, action.dest
            assert re.sub(r"\s", "", action.help) in text, action.dest
            if action.default is not None:
                assert re.sub(r"\s", "", f"(default: {action.default})") in text, action.dest
    # A None default says nothing; each such flag's help says what it stands for instead.
    assert "(default:None)" not in text


def test_malloc_settings_reach_the_processes_a_run_starts_and_a_users_own_win(monkeypatch):
    from pipeline import memory

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    memory.configure_malloc()
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MALLOC_ARENA_MAX'], "
                                                  "os.environ['MALLOC_MMAP_THRESHOLD_'])"],
                           capture_output=True, text=True, check=True)
    assert child.stdout.split() == [str(memory.SETTINGS["MALLOC_ARENA_MAX"]), "65536"]


def test_the_readme_documents_exactly_the_cli_commands_and_each_has_help(capsys):
    readme = (ROOT / "README.md").read_text()
    assert re.findall(r"^### `fimflow ([a-z-]+)", readme, re.M) == list(cli.COMMANDS)
    for command in cli.COMMANDS:
        try:
            code = cli.main([command, "--help"])
        except SystemExit as exited:  # argparse's own --help
            code = exited.code
        assert code == 0 and f"fimflow {command}" in capsys.readouterr().out, command


def test_each_extra_a_command_checks_for_is_the_extra_setup_installs():
    from importlib.metadata import packages_distributions, requires

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    from pipeline.extras import EXTRA_MODULES

    installed_by = {}
    for line in requires("fimflow"):
        requirement = Requirement(line)
        for extra in EXTRA_MODULES:
            if requirement.marker and requirement.marker.evaluate({"extra": extra}):
                installed_by.setdefault(extra, set()).add(canonicalize_name(requirement.name))
    # Modules by the distributions that install them (tensorflow comes from tensorflow-cpu).
    distributions = packages_distributions()
    assert {extra: {canonicalize_name(d) for m in modules for d in distributions[m]} for extra, modules in EXTRA_MODULES.items()} \
        == installed_by


@pytest.mark.parametrize("command, extra", [(["inspect", "out"], "tf"), (["report", "out"], "report")])
def test_a_command_without_its_extra_says_in_one_line_which_to_install(command, extra, tmp_path):
    # The base install, as far as these two go: neither can be found or imported.
    result = run_cli_without(("tensorflow", "matplotlib"), command)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and f'pip install -e ".[{extra}]"' in result.stderr, result.stderr


def test_the_readme_lists_the_fim_presets_of_the_registry_with_their_layouts():
    from transforms.core.fim_format import FORMATS

    readme = (ROOT / "README.md").read_text()
    option = re.search(r"^\| `--fim_format NAME` \| `paper` \| (.*)$", readme, re.M).group(1)
    assert re.findall(r"`([a-z][a-z0-9.-]*)`", option.split("(see FIM formats)")[0]) == list(FORMATS)
    table = re.search(r"^\| preset \|.*?\n\|---.*?\n((?:\|.*\n)+)", readme, re.M).group(1)
    rows = [[cell.strip() for cell in row.strip("|\n").split(" | ")] for row in table.splitlines()]
    assert [row[0] for row in rows] == [f"`{name}`" for name in FORMATS]
    for (name, psm, spm, bos, spm_share, *_), fmt in zip(rows, FORMATS.values()):
        for cell, mode in ((psm, "psm"), (spm, "spm")):
            expected = f"`{fmt.layout_text(mode)}`".replace("|", "\\|") if mode in fmt.orders else "—"
            assert cell.split(" (")[0] == expected, (name, mode)
        assert (bos, float(spm_share)) == ("on" if fmt.bos else "off", fmt.spm_rate), name


def test_every_link_between_the_docs_points_at_a_file_of_the_checkout():
    def prose(page: Path) -> str:  # without code blocks and code spans, which hold brackets of their own
        return re.sub(r"`[^`\n]*`", "", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S))

    pages = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = [(page.name, target) for page in pages
              for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", prose(page))
              if "://" not in target and not (page.parent / target).exists()]
    assert len(pages) >= 5 and broken == []
