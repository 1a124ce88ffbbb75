"""fimflow report: a page that opens offline, checked in a real headless Chromium against metadata.json."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.report import lookup, numbers_as_json, report_numbers
from tests.corpora import stdlib_sources
from tests.tools import require

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, code_model_path):
    root = tmp_path_factory.mktemp("report")
    (root / "in").mkdir()
    docs = stdlib_sources(400_000, seed=5)
    (root / "in" / "a.jsonl").write_text("".join(json.dumps({"content": d}) + "\n" for d in docs) + "not json\n")
    (root / "in" / "b.py").write_text("def f(x):\n    return x\n")
    out = root / "out"
    assert main(["run", "--input", str(root / "in"), "--output", str(out), "--tokenizer", code_model_path,
                 "--context_length", "512", "--fim_rate", "0.7", "--max_error_fraction", "0.1", "--quiet"]) == 0
    return out, json.loads((out / "metadata.json").read_text())


def test_the_json_numbers_are_metadatas(dataset, capsys):
    out, metadata = dataset
    capsys.readouterr()
    assert main(["report", str(out), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers == numbers_as_json(metadata)
    assert all(lookup(numbers, path) == value == lookup(metadata, path) for path, value in report_numbers(metadata))
    assert numbers["counts"]["documents"] == metadata["counts"]["documents"]
    assert numbers["errors"]["by_reason"] == {"invalid_json": 1}
    measured = numbers["measured"]
    assert sum(measured["document_tokens_histogram"].values()) == metadata["counts"]["documents"]
    assert sum(measured["middle_tokens_histogram"].values()) == metadata["counts"]["fim_fragments"]
    assert set(numbers["sources"]["language"]) == {"unknown", "Python"}


def test_the_page_loads_every_image_and_shows_the_metadatas_numbers_in_chromium(dataset, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = require("chromium"), require("chromedriver")
    out, metadata = dataset
    page = tmp_path / "report.html"
    assert main(["report", str(out), "--out", str(page)]) == 0
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600"):
        options.add_argument(flag)
    os.environ["SE_OFFLINE"] = "true"  # Selenium must not look for a driver online.
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    try:
        driver.get(page.as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        shown = driver.execute_script(
            "return Array.from(document.querySelectorAll('[data-key]')).map(e => [e.dataset.key, e.textContent])")
        examples = driver.execute_script("return document.querySelectorAll('.segment').length")
        driver.save_screenshot(str(tmp_path / "report.png"))
    finally:
        driver.quit()
    # Histograms (3), FIM shares, tokens in examples, tokens per language and per pattern, dead letters.
    assert len(images) == 8 and all(complete and w > 100 and h > 50 for complete, w, h in images), images
    assert examples >= 4
    paths = sorted(tuple(json.loads(key)) for key, _ in shown)
    assert paths == sorted(path for path, _ in report_numbers(metadata))
    for key, text in shown:
        value = lookup(metadata, tuple(json.loads(key)))
        assert float(text.replace(",", "")) == pytest.approx(value, abs=1e-4), key
    if os.environ.get("FIMFLOW_UPDATE_SCREENSHOT"):
        (ROOT / "docs" / "report.png").write_bytes((tmp_path / "report.png").read_bytes())
