import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
stage=0
max_duration=200
use_gpu=false
help_message="usage: demo"
. {root}/shared/parse_options.sh || exit 1
echo "$stage $max_duration $use_gpu $*"
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", SCRIPT.format(root=ROOT), "demo", *args],
                          capture_output=True, text=True)


def test_sets_variables_with_dashes_and_keeps_positionals():
    r = run("--max-duration", "300", "--use-gpu", "true", "rest")
    assert r.returncode == 0 and r.stdout.strip() == "0 300 true rest"


def test_unknown_option_is_named():
    r = run("--max-durration", "3")
    assert r.returncode != 0 and "--max-durration" in r.stderr


def test_boolean_and_equals_forms_rejected():
    assert "true or false" in run("--use-gpu", "yes").stderr
    assert "--name value" in run("--stage=3").stderr


def test_help_and_config(tmp_path):
    assert run("--help").stdout.strip() == "usage: demo"
    conf = tmp_path / "c.sh"
    conf.write_text("max_duration=50\nstage=2\n")
    r = run("--config", str(conf), "--stage", "5")
    assert r.stdout.strip() == "5 50 false"
