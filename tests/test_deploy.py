"""deploy/: the Flex Template metadata, the launcher, the scheduled job's launch request."""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

from pipeline.options import FimflowOptions, expand_output

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def cli_options() -> dict:
    parser = argparse.ArgumentParser()
    FimflowOptions._add_argparse_args(parser)
    return {a.dest: a for a in parser._actions if a.option_strings and a.dest != "help"}


def template_parameters() -> dict:
    return {p["name"]: p for p in json.loads((DEPLOY / "metadata.json").read_text())["parameters"]}


# --wait would keep the Flex Template launcher waiting for the whole job; a launcher submits and returns.
CLI_ONLY = {"wait"}
# A Beam option the launcher defaults to the template's own image (pipeline.cli.launch_flex_template).
BEAM_PARAMETERS = {"sdk_container_image"}


def test_flex_template_parameters_map_one_to_one_onto_cli_options():
    assert sorted(template_parameters()) == sorted(set(cli_options()) - CLI_ONLY | BEAM_PARAMETERS)


def test_flex_template_parameter_constraints_match_the_cli():
    options = cli_options()
    for name, parameter in template_parameters().items():
        assert parameter["helpText"] and parameter["label"]
        if name in BEAM_PARAMETERS:
            continue
        action = options[name]
        if action.choices:
            assert parameter["regexes"] == ["^(" + "|".join(action.choices) + ")$"]
        for pattern in parameter.get("regexes", []):
            default = action.default
            if default not in (None, False):
                # Templates spell booleans as JSON does.
                value = str(default).lower() if isinstance(default, bool) else str(default)
                assert re.fullmatch(pattern, value), (name, pattern, default)
    assert {n for n, p in template_parameters().items() if not p["isOptional"]} == {"input", "output", "tokenizer"}


def test_template_values_parse_as_the_launcher_passes_them():
    from apache_beam.options.pipeline_options import PipelineOptions

    o = PipelineOptions(["--overwrite=true", "--context_length=4096", "--fim_rate=0.9"]).view_as(FimflowOptions)
    assert o.overwrite is True and o.context_length == 4096 and o.fim_rate == 0.9
    assert PipelineOptions(["--overwrite=false"]).view_as(FimflowOptions).overwrite is False
    assert PipelineOptions(["--overwrite"]).view_as(FimflowOptions).overwrite is True


def test_output_is_templated_by_run_date():
    now = datetime.datetime(2026, 11, 25, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert expand_output("gs://b/fim/{date}", now) == "gs://b/fim/2026-11-25"
    assert expand_output("gs://b/fim/{datetime}/x", now) == "gs://b/fim/2026-11-25T030405Z/x"


def render_tftpl(text: str, variables: dict) -> str:
    """Terraform's templatefile() for the ${name} and ${jsonencode(name)} forms the template uses."""
    text = re.sub(r"\$\{jsonencode\((\w+)\)\}", lambda m: json.dumps(variables[m.group(1)]), text)
    return re.sub(r"\$\{(\w+)\}", lambda m: str(variables[m.group(1)]), text)


def test_scheduled_launch_request_is_a_valid_flex_template_launch():
    parameters = {"input": "gs://corpus/*.jsonl.gz", "output": "gs://out/fim/{date}",
                  "tokenizer": "gs://models/code.model", "context_length": "2048", "seed": "1"}
    body = json.loads(render_tftpl((DEPLOY / "terraform" / "launch_body.json.tftpl").read_text(), {
        "job_name": "fimflow-nightly", "template_spec": "gs://templates/fimflow.json",
        "parameters": parameters, "service_account": "fimflow@p.iam.gserviceaccount.com",
        "temp_location": "gs://tmp/fimflow", "machine_type": "n2-standard-4", "max_workers": 100,
        "region": "europe-west4"}))
    launch = body["launchParameter"]
    assert launch["containerSpecGcsPath"] == "gs://templates/fimflow.json"
    assert set(launch["parameters"]) <= set(template_parameters())
    assert launch["parameters"]["output"].endswith("{date}")
    env = launch["environment"]
    assert env["maxWorkers"] == 100 and env["machineType"] == "n2-standard-4"
    assert "use_runner_v2" in env["additionalExperiments"]
    main_tf = (DEPLOY / "terraform" / "main.tf").read_text()
    assert "flexTemplates:launch" in main_tf and 'templatefile("${path.module}/launch_body.json.tftpl"' in main_tf


def test_terraform_is_well_formed_hcl():
    """`terraform validate` needs the provider from the registry, unreachable here; fmt parses the HCL."""
    import shutil
    import subprocess

    import pytest

    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed")
    result = subprocess.run([terraform, "fmt", "-check", "-diff", str(DEPLOY / "terraform")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_flex_template_entry_point_runs_fimflow_run():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, str(DEPLOY / "launch.py"), "--context_length=2"],
                            capture_output=True, text=True, cwd=DEPLOY.parent)
    assert result.returncode == 2 and "--context_length=2 is too small" in result.stderr
