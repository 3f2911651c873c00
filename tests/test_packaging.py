"""The wheel users install: built from this checkout, installed without -e, used from elsewhere."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

RENDER_A_CARD = """
import hf_cakd, hf_cakd.run.hub as hub
print(hf_cakd.__file__)
print(hub.default_template_path())
card = hub.student_model_card(hub.CardInputs(
    model_name="run", student="timm:resnet18", teacher=None, student_family="cnn", teacher_family=None,
    method="none", method_title="no distillation", method_options={}, dataset="uoft-cs/cifar10", eval_split=None,
    metrics={}, global_steps=3, epochs_seen=0.5, per_device_batch_size=4, num_processes=1,
    gradient_accumulation_steps=1, learning_rate=0.1, seed=0, license="mit",
))
print(card.data.license, "steps trained: 3" in card.text)
"""


@pytest.mark.slow  # several processes (or a wheel build): minutes on a 2-core CPU
def test_the_installed_wheel_ships_the_card_template_and_the_cli_entry_point(tmp_path):
    # Build from a copy, so the checkout gets no build/ or egg-info.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "hf_cakd", source / "hf_cakd", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", source], check=True)
    (wheel,) = (tmp_path / "dist").glob("hf_cakd-*.whl")
    target = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", target, wheel], check=True)

    assert (target / "hf_cakd" / "model_cards" / "student.md.jinja").is_file()
    (entry_points,) = target.glob("hf_cakd-*.dist-info/entry_points.txt")
    assert "hf-cakd = hf_cakd.cli:main" in entry_points.read_text()

    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-c", RENDER_A_CARD], cwd=tmp_path, env=env, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == str(target / "hf_cakd" / "__init__.py")
    assert out[1] == str(target / "hf_cakd" / "model_cards" / "student.md.jinja")
    assert out[2] == "mit True"
