"""Bad input gets a clear message (file, column or key) and exit status 2, not a stack trace."""
import pytest

from ecomlake import rees46
from ecomlake.jobs import clean, ingest, sessionize


def lake_args(tmp_path):
    return ["--lake", str(tmp_path / "lake"), "--conf", "spark.master=local[2]"]


def test_missing_input_file(spark, tmp_path, capsys):
    rc = ingest.main(["--source", "rees46", "--input", str(tmp_path / "nope.csv"), *lake_args(tmp_path)])
    assert rc == 2
    assert f"input '{tmp_path / 'nope.csv'}' does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("source, kind, header", [("rees46", "9-column REES46", rees46.HEADER),
                                                   ("rees46_catalog", "5-column catalogue", rees46.CATALOG_HEADER)])
def test_wrong_header_names_the_file(spark, tmp_path, capsys, source, kind, header):
    bad = tmp_path / "orders.csv"
    bad.write_text("order_id,amount\n1,2.5\n")
    rc = ingest.main(["--source", source, "--input", str(bad), *lake_args(tmp_path)])
    err = capsys.readouterr().err
    message = f"{bad} does not have the {kind} header: expected '{header}', found 'order_id,amount'"
    if source == "rees46":  # one file of a daily batch: set aside whole, the others go on (exit 3)
        assert rc == 3
        assert "1 input file(s) quarantined whole: see quarantine/files" in err
        files = spark.read.format("delta").load(str(tmp_path / "lake" / "quarantine" / "files")).collect()
        assert [r.reason for r in files] == ["wrong_header"] and message in files[0].detail
    else:  # the catalogue is one snapshot: nothing to go on with
        assert rc == 2
        assert message in err
    assert "Traceback" not in err


def test_catalogue_ingest_without_input_says_what_to_pass(spark, tmp_path, capsys):
    rc = ingest.main(["--source", "rees46_catalog", *lake_args(tmp_path)])
    assert rc == 2
    assert "--source rees46_catalog needs --input (the catalogue CSV" in capsys.readouterr().err


def test_unknown_source_and_config_typo(spark, tmp_path, capsys):
    rc = sessionize.main(["--conf", "sessionize.gap_minuts=5", *lake_args(tmp_path)])
    assert rc == 2
    assert "unknown config key 'sessionize.gap_minuts'" in capsys.readouterr().err


def test_missing_table_names_the_job_to_run_first(spark, tmp_path, capsys):
    assert clean.main(lake_args(tmp_path)) == 2
    assert "table bronze/events does not exist" in capsys.readouterr().err
    assert sessionize.main(lake_args(tmp_path)) == 2
    assert "run the `clean` job first" in capsys.readouterr().err


def test_new_jobs_name_what_is_wrong(spark, tmp_path, capsys):
    from ecomlake.jobs import features, score, train, train_deep

    assert features.main(["--as-of", "2019-13-01", *lake_args(tmp_path)]) == 2
    assert "--as-of must be a date YYYY-MM-DD, got '2019-13-01'" in capsys.readouterr().err
    assert features.main(["--as-of", "2019-11-17", *lake_args(tmp_path)]) == 2
    assert "table silver/events does not exist" in capsys.readouterr().err
    assert train.main(["propensity", *lake_args(tmp_path)]) == 2
    assert "train propensity needs --as-of DATE" in capsys.readouterr().err
    assert train.main(["segments", "--as-of", "2019-11-17", "--conf", "train.als_ranks=[]", *lake_args(tmp_path)]) == 2
    assert "config key 'train.als_ranks'" in capsys.readouterr().err
    assert score.main(["--as-of", "2019-12-01", *lake_args(tmp_path)]) == 2
    assert "table gold/user_features does not exist" in capsys.readouterr().err
    assert train_deep.main(["wide_deep", "--as-of", "2019-11-17", "--num-proc", "2", *lake_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "table gold/user_features does not exist" in err and "Traceback" not in err


def test_analytics_jobs_name_the_missing_table_or_bad_flag(spark, tmp_path, capsys):
    from ecomlake.jobs import clv, pricing, risk, sentiment

    assert clv.main(["--orders", "cdnow", *lake_args(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "table bronze/cdnow_orders does not exist" in err and "run the `ingest --source cdnow` job first" in err
    assert clv.main(["--orders", "events", *lake_args(tmp_path)]) == 2
    assert "--orders events needs --calibration-end (YYYY-MM-DD)" in capsys.readouterr().err
    assert clv.main(["--orders", "cdnow", "--calibration-end", "30/09/1997", *lake_args(tmp_path)]) == 2
    assert "--calibration-end must be a date YYYY-MM-DD, got '30/09/1997'" in capsys.readouterr().err
    assert sentiment.main(lake_args(tmp_path)) == 2
    assert "bronze/clothing_reviews does not exist" in capsys.readouterr().err
    assert risk.main(lake_args(tmp_path)) == 2
    assert "silver/events does not exist" in capsys.readouterr().err
    assert pricing.main(["--holdout-weeks", "0", *lake_args(tmp_path)]) == 2
    assert "--holdout-weeks must be at least 1, got 0" in capsys.readouterr().err
    assert pricing.main(lake_args(tmp_path)) == 2
    err = capsys.readouterr()
    assert "pricing found none of its inputs" in err.err and "run `ingest --source dominicks_oj`" in err.err
    assert "Traceback" not in err.err


@pytest.mark.parametrize("override, message", [
    ("risk.gbt_max_iter=0", "config key 'risk.gbt_max_iter' in --conf risk.gbt_max_iter must be at least 1, got 0"),
    ("train.forecast_backtest_folds=0", "'train.forecast_backtest_folds' .* must be at least 1, got 0"),
    ("graph.communities=1", "'graph.communities' .* must be at least 2, got 1"),
    ("train.ease_lambdas=[250, 0]", r"each value of config key 'train.ease_lambdas' .* must be above 0, got \[250, 0\]"),
    ("clv.horizon_weeks=-1", "'clv.horizon_weeks' .* must be above 0, got -1.0"),
    ("generate.dirty_fraction=-0.1", "'generate.dirty_fraction' .* must be at least 0, got -0.1"),
])
def test_a_setting_out_of_range_is_refused_when_the_config_loads(override, message):
    """Ranges live in config.SCHEMA, so a job never starts (nor reads anything) with a setting it
    would fail on half-way: an EASE lambda of 0 would stop inside numpy's inverse with a stack trace."""
    from ecomlake import config as cfg
    from ecomlake.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        cfg.load("local", overrides=[override])
    cfg.load("local", overrides=[override.split("=")[0] + "=" + str(cfg._get(cfg.defaults(), override.split("=")[0]))])
