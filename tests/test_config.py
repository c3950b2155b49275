from pathlib import Path

import pytest

from driftkeel.config import ConfigError, load_all, load_section

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_are_valid():
    sections = load_all(REPO / "params.yaml")
    assert sections["common"].seed == 0
    assert sections["sft"].model_name_or_path == "tiny"


def test_unknown_key_is_named(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("common: {seed: 1}\nmix: {replay_fraction: 0.3, replay_fractoin: 0.2}\n")
    with pytest.raises(ConfigError, match=r"mix\.replay_fractoin"):
        load_section("mix", p)


def test_out_of_range_value_is_named(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("mix: {replay_fraction: 1.5}\n")
    with pytest.raises(ConfigError, match=r"mix\.replay_fraction"):
        load_section("mix", p)


def test_unknown_section(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("mixx: {}\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_section("mix", p)


def test_yaml_tags_are_not_executed(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("common: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception) as exc:
        load_section("mix", p)
    assert "could not determine a constructor" in str(exc.value)


def test_new_cluster_weight_below_one_is_refused(tmp_path):
    """mix.new_cluster_weight up-weights pairs in new clusters (prior boost = weight - 1); a value below 1
    used to be accepted and then silently switched the cluster weights off (a negative boost means 'off')."""
    p = tmp_path / "params.yaml"
    p.write_text("mix: {new_cluster_weight: 0.5}\n")
    with pytest.raises(ConfigError, match=r"mix\.new_cluster_weight"):
        load_section("mix", p)
    p.write_text("mix: {new_cluster_weight: 1.0}\n")
    assert load_section("mix", p)[1].new_cluster_weight == 1.0
