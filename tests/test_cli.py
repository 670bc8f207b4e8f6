import subprocess
import sys

import numpy as np
import pytest

from mnistgen import __version__
from mnistgen.cli import main
from mnistgen.config import apply_overrides, load_preset


def run_cli(*args):
    """The real console entry point in a subprocess: exit code, stdout, stderr."""
    proc = subprocess.run([sys.executable, "-m", "mnistgen", *args], capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


def test_help_and_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("data", "train", "sample", "report", "presets"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert __version__ in capsys.readouterr().out


def test_data_info_reports_mnist(mnist, capsys):
    assert main(["data", "info"]) == 0
    out = capsys.readouterr().out
    assert "60,000" in out and "10,000" in out
    assert "[5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]" in out
    assert "[980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]" in out
    assert "cache" in out


def test_data_info_with_explicit_npz(tiny_npz, capsys):
    assert main(["data", "info", "--data", str(tiny_npz)]) == 0
    assert "npz" in capsys.readouterr().out


def test_missing_path_is_one_line_exit_2(tmp_path):
    code, out, err = run_cli("data", "info", "--data", str(tmp_path / "nope"))
    assert code == 2
    assert err.strip().count("\n") == 0 and "does not exist" in err and "Traceback" not in err


def test_wrong_shape_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 32, 32), np.uint8), y_train=np.zeros(2, np.int64),
             x_test=np.zeros((2, 28, 28), np.uint8), y_test=np.zeros(2, np.int64))
    assert main(["data", "info", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shape" in err


def test_truncated_file_is_one_line_exit_2(idx_folder, capsys):
    target = idx_folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100])
    assert main(["data", "info", "--data", str(idx_folder)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_unreadable_file_is_one_line_exit_2(tmp_path, capsys):
    odd = tmp_path / "data.txt"
    odd.write_text("hello")
    assert main(["data", "info", "--data", str(odd)]) == 2
    assert "folder of IDX files or an .npz" in capsys.readouterr().err


def test_debug_shows_traceback(tmp_path):
    code, _, err = run_cli("--debug", "data", "info", "--data", str(tmp_path / "nope"))
    assert code != 0 and "Traceback" in err


def test_unknown_preset_lists_valid_names(capsys):
    assert main(["train", "no-such-model", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "unknown preset" in err and "conv-vae-seed000" in err and "gan" in err


def test_float_override_without_a_dot_is_a_float():
    # YAML 1.1 reads 1e-3 as a string; a user typing --set lr=1e-3 means the number.
    assert apply_overrides(load_preset("gan"), ["lr_g=1e-3"]).train.lr_g == 1e-3


@pytest.mark.parametrize("override,message", [
    ("nonsense=1", "unknown setting"),
    ("lr", "key=value"),
    ("lr=fast", "lr must be a finite number > 0"),
    ("epochs=0", "epochs must be a whole number >= 1"),
    ("loss=magic", "loss must be one of"),
])
def test_bad_override_is_a_clear_error(override, message, capsys):
    assert main(["train", "vae", "--dry-run", "--set", override]) == 2
    assert message in capsys.readouterr().err


def every_parser(parser):
    """The parser and all its subcommands' parsers, depth first."""
    import argparse

    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from every_parser(sub)


def test_every_option_has_help_and_every_command_examples():
    import argparse

    from mnistgen.cli import COMMANDS, build_parser

    for parser in every_parser(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue  # each of its commands has its own help line
            assert action.help, f"{parser.prog} {action.option_strings or action.dest} has no help text"
    top = build_parser()
    for name in COMMANDS:
        sub = next(p for p in every_parser(top) if p.prog == f"mnistgen {name}")
        assert sub.epilog and sub.epilog.startswith("examples:") and f"mnistgen {name}" in sub.epilog


@pytest.mark.parametrize("args,expected", [
    (["sample", "x", "--out", "a.png", "--n-samples", "3"], "(see mnistgen sample --help)"),
    (["train", "gna", "--dry-run"], "did you mean gan?"),
    (["train", "VAE", "--dry-run"], "did you mean vae?"),
    (["train", "vae", "--dry-run", "--set", "latent_dim=8"], "did you mean model_args.latent_dim?"),
    (["train", "vae", "--dry-run", "--set", "model_args.latnt_dim=8"], "did you mean latent_dim?"),
    (["sample", "gan", "--out", "g.png"], "add --pretrained"),
])
def test_errors_point_the_way(args, expected, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_a_file_that_is_not_a_checkpoint_is_named_as_such(tmp_path, capsys):
    picture = tmp_path / "some.png"
    picture.write_bytes(b"\x89PNG")
    assert main(["sample", str(picture), "--out", str(tmp_path / "x.png")]) == 2
    assert "takes a run folder or a .pt checkpoint" in capsys.readouterr().err


def test_time_budget_and_count_have_one_name_each_with_the_old_spelling_kept():
    from mnistgen.cli import build_parser

    parser = build_parser()
    for argv in (["train", "vae", "--minutes", "2"], ["train", "vae", "--max-minutes", "2"],
                 ["reproduce", "002", "--minutes", "2"], ["reproduce", "002", "--max-minutes", "2"],
                 ["report", "--minutes", "2"], ["sweep", "vae", "--param", "lr=log:1e-4:1e-2", "--trials", "1",
                                                 "--minutes", "2"]):
        assert parser.parse_args(argv).minutes == 2.0
    assert parser.parse_args(["sample", "x", "--out", "a.png", "--num", "7"]).n == 7
    assert parser.parse_args(["sample", "x", "--out", "a.png", "-n", "7"]).n == 7
    for command in (["sample", "x", "--out", "a.png"], ["evaluate", "x"], ["serve"], ["report"]):
        assert parser.parse_args([*command, "--device", "cpu"]).device == "cpu"


def test_presets_lists_the_defaults_first_and_describes_one(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Recommended:" and [line.split()[0] for line in lines[2:5]] == ["vae", "gan", "flow"]
    assert "5 CPU-minutes" in lines[2] and out.index("report 000") < out.index("report 004")
    assert max(len(line) for line in lines) < 160  # one short line each
    assert main(["presets", "dcgan-seed000"]) == 0
    described = capsys.readouterr().out
    assert "Seed 000's DCGAN as written" in described and "parameters:" in described
    assert main(["presets", "dcgan"]) == 2


def test_sweep_metrics_match_the_sweep_module():
    from mnistgen.cli import SWEEP_METRICS
    from mnistgen.sweep import METRICS

    assert list(SWEEP_METRICS) == list(METRICS)
