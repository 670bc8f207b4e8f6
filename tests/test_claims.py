"""The seed reports' claims (mnistgen/seeds/*.yaml) load, cover every seed preset, and quote the reports exactly."""

import re
from pathlib import Path

import pytest
import yaml

from mnistgen.claims import CLAIM_KEYS, load_claims, seed_numbers, systems_of
from mnistgen.config import apply_overrides, load_preset, preset_names
from mnistgen.errors import ConfigError
from test_seed_presets import SEEDS, seed_text, squash  # the reports, read from ../shared/seeds

PACKAGED = Path(__file__).resolve().parents[1] / "src" / "mnistgen" / "seeds"
ALL_SEEDS = seed_numbers()


def quoted_claims(seed: str):
    """(where, claim) for every claim of a seed file that has a quote: file-level and per system."""
    claims = load_claims(seed)
    found = [("hardware", claims.hardware), ("acceptable_rule", claims.acceptable_rule)]
    found += [(f"{s.id}.{name}", claim) for s in claims.systems for name, claim in s.claims.items()]
    return [(where, claim) for where, claim in found if claim.quote is not None]


def written_forms(value: float) -> set[str]:
    """How a report may write ``value`` (canonical units): as is, as a percentage, in minutes or
    hours, or in thousands or millions ("2.3M")."""
    forms = set()
    for scaled in (value, value * 100, value / 60, value / 3600, value / 1e3, value / 1e6):
        scaled = round(scaled, 6)
        forms.add(str(int(scaled)) if float(scaled).is_integer() else str(scaled))
    return forms


def number_in(value: float, quote: str) -> bool:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", quote)  # 1,164,289 -> 1164289
    return any(re.search(rf"(?<![\d.]){re.escape(form)}(?!\d|\.\d)", text) for form in written_forms(value))


def numbers_of(value) -> list[float]:
    if isinstance(value, dict):
        return [v for item in value.values() for v in numbers_of(item)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


# ---------------------------------------------------------------------------- the files


def test_there_is_one_claims_file_per_seed_report():
    assert ALL_SEEDS == ["000", "001", "002", "003", "004"]
    if SEEDS.is_dir():
        assert ALL_SEEDS == sorted({p.name[:3] for p in SEEDS.glob("[0-9][0-9][0-9]_*.txt")})


@pytest.mark.parametrize("seed", ALL_SEEDS)
def test_every_claims_file_loads_with_every_claim(seed):
    claims = load_claims(seed)
    assert claims.seed == seed and claims.systems
    for system in claims.systems:
        assert tuple(system.claims) == CLAIM_KEYS
        assert any(c.stated for c in system.claims.values()), f"{system.id} states nothing"


def test_every_seed_preset_is_covered_by_a_system():
    covered = {system.preset for _, system in systems_of(ALL_SEEDS)}
    missing = [p for p in preset_names() if "seed" in p and p not in covered]
    assert not missing, f"seed presets with no claims: {missing}"


def test_systems_of_keeps_the_order_asked_for():
    pairs = systems_of(["002", "000"])
    assert [seed for seed, _ in pairs] == ["002"] * 3 + ["000"] * 2
    assert [s.id for _, s in pairs][:3] == [f"mlp-vae-2d-seed002-{n}-epochs" for n in (5, 10, 30)]


@pytest.mark.parametrize("seed", ALL_SEEDS)
def test_source_is_the_reports_file(seed):
    seed_text(seed)
    assert (SEEDS / load_claims(seed).source).is_file()


@pytest.mark.parametrize("seed", ALL_SEEDS)
def test_presets_with_overrides_train_as_the_report_says(seed):
    for system in load_claims(seed).systems:
        cfg = apply_overrides(load_preset(system.preset), system.set_args())
        for name in ("epochs", "batch_size"):
            claim = system.claims[name]
            if claim.stated and "derived" not in (claim.note or ""):
                assert getattr(cfg.train, name) == claim.value, f"{system.id}: {name}"


# ---------------------------------------------------------------------------- the quotes


@pytest.mark.parametrize("seed", ALL_SEEDS)
def test_every_quote_is_the_reports_words(seed):
    report = squash(seed_text(seed))
    for where, claim in quoted_claims(seed):
        assert squash(claim.quote) in report, f"{seed} {where}: {claim.quote!r} is not in the report"


@pytest.mark.parametrize("seed", ALL_SEEDS)
def test_every_quote_contains_its_number(seed):
    for where, claim in quoted_claims(seed):
        if "derived" in (claim.note or ""):
            continue
        for number in numbers_of(claim.value):
            assert number_in(number, claim.quote), f"{seed} {where}: {number} is not in {claim.quote!r}"


@pytest.mark.parametrize("value, quote, found", [
    (0.76, "a performance sucess of 76%", True),
    (2_300_000, "**Parameters**: ~2.3M", True),
    (300, "approximately 5 minutes", True),
    (1_164_289, "Total params: 1,164,289", True),
    (5.7807, "kl_loss: 5.7807 - loss", True),
    (5, "epochs = 50", False),
    (0.88, "76%", False),
])
def test_number_in_finds_written_forms(value, quote, found):
    assert number_in(value, quote) is found


# ---------------------------------------------------------------------------- refusals


def test_an_unknown_seed_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"seed '007' has no claims file; known: 000, 001, 002, 003, 004"):
        load_claims("007")


def _drop_claim_key(d):
    del d["systems"][0]["claims"]["fid"]


def _unknown_claim_key(d):
    d["systems"][0]["claims"]["epochs"]["source"] = "x"


def _value_without_quote(d):
    d["systems"][1]["claims"]["epochs"]["quote"] = None


def _percent_not_fraction(d):
    d["systems"][0]["claims"]["acceptable"] = {"value": 76, "quote": "76%"}


def _unknown_preset(d):
    d["systems"][0]["preset"] = "no-such-preset"


def _unknown_setting(d):
    d["systems"][0]["set"] = {"epoch": 5}


def _bad_setting_value(d):
    d["systems"][0]["set"] = {"epochs": 0}


def _id_differs_without_set(d):
    d["systems"][0]["id"] = "renamed"


def _wrong_seed(d):
    d["seed"] = "004"


def _threshold_without_rule(d):
    d["acceptable_rule"]["threshold"] = 0.9


def _loss_we_do_not_log(d):
    d["systems"][0]["claims"]["final_losses"] = {"value": {"total": 180.0, "kl_loss": 5.8}, "quote": "q"}


def _loss_not_a_number(d):
    d["systems"][0]["claims"]["final_losses"] = {"value": {"total": "low"}, "quote": "q"}


@pytest.mark.parametrize("break_it, key", [
    (_drop_claim_key, r"systems\[0\]\.claims: missing key\(s\) fid"),
    (_unknown_claim_key, r"systems\[0\]\.claims\.epochs: unknown key\(s\) source"),
    (_value_without_quote, r"systems\[1\]\.claims\.epochs: value and quote"),
    (_percent_not_fraction, r"systems\[0\]\.claims\.acceptable\.value: must be a fraction"),
    (_unknown_preset, r"systems\[0\]\.preset: unknown preset"),
    (_unknown_setting, r"systems\[0\]\.set: unknown training setting 'epoch'"),
    (_bad_setting_value, r"systems\[0\]\.set\.epochs: epochs must be"),
    (_id_differs_without_set, r"systems\[0\]\.id: must be the preset's name"),
    (_wrong_seed, r"seed: must be '003'"),
    (_threshold_without_rule, r"acceptable_rule\.threshold: is set but"),
    (_loss_we_do_not_log, r"systems\[0\]\.claims\.final_losses\.value: unknown loss name\(s\) kl_loss; "
                          r"known: total, reconstruction, kl"),
    (_loss_not_a_number, r"systems\[0\]\.claims\.final_losses\.value: must be a mapping of loss name to number"),
])
def test_a_malformed_file_is_refused_naming_file_and_key(tmp_path, break_it, key):
    data = yaml.safe_load((PACKAGED / "003.yaml").read_text(encoding="utf-8"))
    break_it(data)
    (tmp_path / "003.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(str(tmp_path / "003.yaml")) + ": " + key):
        load_claims("003", folder=tmp_path)


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    (tmp_path / "001.yaml").write_text("seed: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"001\.yaml: not valid YAML"):
        load_claims("001", folder=tmp_path)


def test_an_unbroken_copy_loads_from_another_folder(tmp_path):
    (tmp_path / "003.yaml").write_text((PACKAGED / "003.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    assert seed_numbers(tmp_path) == ["003"]
    assert load_claims("003", folder=tmp_path) == load_claims("003")

