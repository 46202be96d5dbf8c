"""ml.batch: runs of the training pipeline side by side, all ended inside a time slot."""

import json

import pytest

from ml.batch import Job, main, parse_jobs, run_batch

from .synthetic import write_dataset

TINY = ["--arch", "convnet", "--image-size", "16", "--split", "random", "--batch-size", "8"]


def test_parse_jobs_reads_names_settings_arguments_and_comments():
    jobs = parse_jobs(
        "# 224 px runs\n\nresnet50-g1 --arch resnet50 --seed 1  # first\n"
        "mnv2 KERAS_BACKEND=torch --arch mobilenetv2 --note A=B\n"
    )
    assert jobs == [
        Job("resnet50-g1", ["--arch", "resnet50", "--seed", "1"]),
        Job("mnv2", ["--arch", "mobilenetv2", "--note", "A=B"], {"KERAS_BACKEND": "torch"}),
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a --arch convnet\na --arch vgg19", "used twice"),
        ("bad/name --arch convnet", "letters, digits"),
        ("a --arch convnet --output elsewhere", "--output is set by the runner"),
        ("a --time-limit=5", "--time-limit=5 is set by the runner"),
        ("# nothing\n", "names no job"),
    ],
)
def test_parse_jobs_refuses_bad_files(text, message):
    with pytest.raises(ValueError, match=message):
        parse_jobs(text)


@pytest.mark.slow
def test_jobs_finish_fail_or_stop_at_the_time_limit_and_the_summary_says_which(tmp_path):
    data = write_dataset(tmp_path / "data", per_class=8, size=16)
    jobs = [
        Job("quick", [*TINY, "--epochs", "1"], {"KERAS_BACKEND": "torch"}),
        Job("broken", ["--arch", "alexnet"]),
        Job("long", [*TINY, "--epochs", "100000", "--patience", "0"]),
    ]  # only its time limit ends it
    lines = []
    result = run_batch(jobs, data, tmp_path / "out", seconds=60, parallel=2, reserve=40, min_start=0, log=lines.append)
    by_name = {job["name"]: job for job in result["jobs"]}
    assert by_name["quick"]["status"] == "done" and by_name["quick"]["epochs_run"] == 1
    assert 0 <= by_name["quick"]["test_accuracy"] <= 1 and by_name["quick"]["model_bytes"] > 0
    quick = json.loads((tmp_path / "out" / "quick" / "metadata.json").read_text())
    assert quick["versions"]["backend"] == "torch"  # the job's own setting reached its process
    assert by_name["broken"]["status"].startswith("failed (exit status 2")
    assert "Unknown architecture" in (tmp_path / "out" / "broken.log").read_text()
    long = by_name["long"]
    assert long["status"] == "done" and long["stopped_by_time_limit"] and long["epochs_run"] >= 1
    assert long["time_limit"] <= 60 - 40
    assert result["seconds"] < 60
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == result
    assert any("long: started" in line for line in lines)


@pytest.mark.slow
def test_a_job_still_running_when_the_slot_ends_is_stopped(tmp_path):
    data = write_dataset(tmp_path / "data", per_class=8, size=16)
    # Two seconds do not even cover importing Keras: the job is stopped, its process group with it.
    result = run_batch(
        [Job("slow", [*TINY, "--epochs", "1"])],
        data,
        tmp_path / "out",
        seconds=2,
        reserve=0,
        min_start=0,
        log=lambda line: None,
    )
    assert result["jobs"][0]["status"] == "stopped at the end of the slot"
    assert not (tmp_path / "out" / "slow" / "metadata.json").exists()


def test_jobs_that_cannot_start_in_the_time_left_are_not_started(tmp_path):
    result = run_batch(
        [Job("a", TINY), Job("b", TINY)],
        tmp_path / "data",
        tmp_path / "out",
        seconds=30,
        min_start=60,
        log=lambda line: None,
    )
    assert [job["status"] for job in result["jobs"]] == ["not started", "not started"]


def test_cli_refuses_a_bad_jobs_file(tmp_path, capsys):
    (tmp_path / "jobs").write_text("x --output y\n")
    code = main(
        ["--jobs", str(tmp_path / "jobs"), "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--seconds", "10"]
    )
    assert code == 2 and "set by the runner" in capsys.readouterr().err
