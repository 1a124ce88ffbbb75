"""Every command of deploy/README.md as a cloud engineer runs it, checked offline.

The Cloud SDK parses a command's arguments, and reads any ``--*-from-file``,
before it needs credentials: with a fresh configuration folder and no account,
a command that would run fails on authentication, and one with an unknown
flag, a bad value or a missing file fails on that first. Each command runs in
bash, exactly as the README writes it, with the README's own ``export`` line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tools import require

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "deploy" / "README.md"
NOT_LOGGED_IN = "You do not currently have an active account selected"


def readme_commands() -> list[str]:
    """The shell lines of the README's code blocks, continuation lines joined."""
    blocks = re.findall(r"```\n(.*?)```", README.read_text(), re.S)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    """Runs a line in bash in a folder holding ``deploy/``, after the README's exports, gcloud unconfigured."""
    require("gcloud")
    folder = tmp_path_factory.mktemp("deploy")
    shutil.copytree(ROOT / "deploy", folder / "deploy")
    (exports,) = [line for line in readme_commands() if line.startswith("export PROJECT=")]
    image = next(line for line in readme_commands() if line.startswith("export IMAGE="))
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "CLOUDSDK_CONFIG": str(folder / "gcloud"),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1", "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1"}

    def run(line: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", f"set -e; {exports}; {image}; {line}"], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)

    run.folder = folder
    return run


def test_every_gcloud_command_in_the_deploy_readme_parses(shell):
    commands = [line for line in readme_commands() if line.startswith(("gcloud ", "sed "))]
    gcloud = [c for c in commands if c.startswith("gcloud ")]
    # Setup, image, template, launch, schedule.
    assert len(gcloud) >= 15
    for command in commands:
        result = shell(command)
        if command.startswith("sed "):
            assert result.returncode == 0, result.stderr
            continue
        assert NOT_LOGGED_IN in result.stderr, f"{command}\n{result.stderr[-2000:]}"
    # The rendered launch request is the example with this project's names in it.
    body = json.loads((shell.folder / "launch_body.json").read_text())
    assert body["launchParameter"]["containerSpecGcsPath"] == "gs://my-fimflow-bucket/templates/fimflow.json"
    assert body["launchParameter"]["environment"]["serviceAccountEmail"].endswith("@my-project.iam.gserviceaccount.com")


@pytest.mark.parametrize("wrong, error", [
    # The command an earlier README gave: this SDK has no such flag.
    ("gcloud dataflow flex-template run j --region r --template-file-gcs-location gs://b/t.json --disk-size-gb 50",
     "unrecognized arguments"),
    ("gcloud scheduler jobs create http j --location r --schedule '0 2 * * *' --uri https://x --http-method POST "
     "--message-body-from-file missing.json", "Unable to read file"),
])
def test_the_check_tells_a_wrong_command_from_a_right_one(shell, wrong, error):
    result = shell(wrong)
    assert result.returncode != 0 and error in result.stderr and NOT_LOGGED_IN not in result.stderr


def test_terraform_is_formatted_hcl():
    """`terraform validate` needs the Google provider from the registry, unreachable here; fmt parses the HCL."""
    terraform = require("terraform")
    result = subprocess.run([terraform, "fmt", "-check", "-diff", str(ROOT / "deploy" / "terraform")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
