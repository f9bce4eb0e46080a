"""One validation rule per kind of number, the same in every command."""
import pytest

from benchmarks.cli import main as benchmarks_main
from compile.cli import main as compile_main
from edge.commands.cli import main as edge_main
from trainer.cli import main as trainer_main

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("main, argv, message", [
    (edge_main, ["run", "--bundle", "b", "--source", "s", "--threads", "0"],
     "argument --threads: must be a whole number of at least 1, got 0"),
    (benchmarks_main, ["latency", "--bundle", "b", "--threads", "0"],
     "argument --threads: must be a whole number of at least 1, got 0"),
    (trainer_main, ["verifier", "--threads", "0"], "argument --threads: must be a whole number of at least 1, got 0"),
    (edge_main, ["run", "--bundle", "b", "--source", "s", "--max_frames", "-1"],
     "argument --max_frames: must be a whole number of at least 0, got -1"),
    (edge_main, ["run", "--bundle", "b", "--source", "s", "--threshold", "nan"],
     "argument --threshold: must be a number, got 'nan'"),
    (edge_main, ["run", "--bundle", "b", "--source", "s", "--target_far", "0"],
     "argument --target_far: must be between 0 and 1 (exclusive), got 0.0"),
    (compile_main, ["--target", "host", "--calibration_images", "many"],
     "argument --calibration_images: must be a whole number of at least 1, got 'many'"),
    (trainer_main, ["verifier", "--lr", "-0.1"], "argument --lr: must be above 0, got -0.1"),
    (benchmarks_main, ["liveness", "--bundle", "b", "--attacks", "a", "--live", "v", "--sweep", "still_looks"],
     "argument --sweep: must be NAME=VALUE[,VALUE...], got 'still_looks'"),
    (benchmarks_main, ["liveness", "--bundle", "b", "--attacks", "a", "--live", "v", "--sweep", "still_looks=4,x"],
     "argument --sweep: must be a number, got 'x'"),
])
def test_a_bad_number_is_one_line_and_exit_code_2_in_every_command(capsys, main, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_progress_is_a_line_every_few_seconds_when_stderr_is_not_a_terminal(capsys):
    from edge.base.progress import progress_bar

    for _ in progress_bar(range(3), desc="work", unit="item"):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and err.strip().splitlines()[-1].startswith("work: 100%")
    for _ in progress_bar(range(2), desc="outer"):              # nested bars: tqdm moves the cursor between them
        for _ in progress_bar(range(2), desc="inner", leave=False, position=1):
            pass
    err = capsys.readouterr().err
    assert "\x1b" not in err and "outer: 100%" in err


def test_the_renamed_rate_flags_take_their_old_spelling_for_one_release_with_a_warning(capsys):
    from compile.cli import build_parser as compile_parser
    from edge.commands.cli import build_parser as edge_parser
    from trainer.cli import build_parser as trainer_parser

    cases = [(trainer_parser, ["verifier", "--data", "d", "--out", "o"], "pair_far"),
             (compile_parser, ["--target", "host"], "probe_far"),
             (edge_parser, ["run", "--bundle", "b", "--source", "s"], "probe_far")]
    for parser, base, dest in cases:
        assert getattr(parser().parse_args([*base, f"--{dest}", "0.002"]), dest) == 0.002
        assert capsys.readouterr().err == ""
        assert getattr(parser().parse_args([*base, "--target_far", "0.003"]), dest) == 0.003
        err = capsys.readouterr().err.strip()
        assert err == f"warning: --target_far is deprecated and goes in the next release; use --{dest}"
