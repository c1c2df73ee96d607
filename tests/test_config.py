import pytest

from ecomlake import config as cfg
from ecomlake.errors import ConfigError


def test_defaults_and_local_file_merge():
    config = cfg.load("local")
    assert config["env"] == "local"
    assert config["sessionize"]["gap_minutes"] == 30
    assert config["spark"]["conf"]["spark.sql.shuffle.partitions"] == 8
    # relative paths are anchored at the repo root
    assert config["lake_root"] == str(cfg.repo_root() / "lakehouse")


def test_overrides_are_typed_and_spark_keys_may_contain_dots():
    config = cfg.load("local", overrides=["sessionize.gap_minutes=45", "generate.dirty_fraction=0",
                                          "spark.conf.spark.sql.shuffle.partitions=3"], lake="/tmp/x")
    assert config["sessionize"]["gap_minutes"] == 45
    assert config["generate"]["dirty_fraction"] == 0.0
    assert config["spark"]["conf"]["spark.sql.shuffle.partitions"] == 3
    assert config["lake_root"] == "/tmp/x"


def test_unknown_key_names_the_key_and_suggests_the_right_one():
    with pytest.raises(ConfigError, match=r"unknown config key 'sessionize.gap_minuts' in --conf "
                                          r".*did you mean 'sessionize.gap_minutes'"):
        cfg.load("local", overrides=["sessionize.gap_minuts=5"])


def test_unknown_key_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "local.yaml"
    path.write_text("env: local\nclean:\n  max_prize: 10\n")
    with pytest.raises(ConfigError, match=rf"unknown config key 'clean.max_prize' in {path}"):
        cfg.load("local", config_file=str(path))


def test_wrong_type_names_key_and_value(tmp_path):
    with pytest.raises(ConfigError, match=r"'sessionize.gap_minutes' .* must be int, got 'abc'"):
        cfg.load("local", overrides=["sessionize.gap_minutes=abc"])
    path = tmp_path / "c.yaml"
    path.write_text("env: local\nspark:\n  master: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"'spark.master' in .*c.yaml must be str"):
        cfg.load("local", config_file=str(path))


def test_invalid_yaml_and_missing_file_and_env_mismatch(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("env: [local\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML"):
        cfg.load("local", config_file=str(bad))
    with pytest.raises(ConfigError, match=r"nope.yaml does not exist"):
        cfg.load("local", config_file=str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match=r"sets env 'cluster' but the job runs with --env local"):
        cfg.load("local", config_file=str(cfg.config_path("cluster")))


def test_every_shipped_environment_file_is_valid():
    for env in cfg.ENVIRONMENTS:
        assert cfg.load(env)["env"] == env


def test_pseudonymisation_key_rules(monkeypatch):
    monkeypatch.delenv("ECOMLAKE_PSEUDONYM_KEY", raising=False)
    local = cfg.load("local")
    assert cfg.pseudonymisation_key(local).startswith(b"ecomlake-local-development-key")
    cluster = cfg.load("cluster")
    with pytest.raises(ConfigError, match=r"\$ECOMLAKE_PSEUDONYM_KEY is not set"):
        cfg.pseudonymisation_key(cluster)
    monkeypatch.setenv("ECOMLAKE_PSEUDONYM_KEY", "short")
    with pytest.raises(ConfigError, match="at least 16 characters"):
        cfg.pseudonymisation_key(cluster)
    monkeypatch.setenv("ECOMLAKE_PSEUDONYM_KEY", "a-proper-secret-key-0123")
    assert cfg.pseudonymisation_key(cluster) == b"a-proper-secret-key-0123"


def test_deep_local_dir_is_local_and_a_uri_lake_needs_one():
    assert cfg.deep_local_dir(cfg.load("local", lake="/data/lake")) == "/data/lake"
    databricks = cfg.load("databricks")
    assert databricks["lake_root"] == "dbfs:/ecomlake"  # Spark jobs take the URI as it is
    with pytest.raises(ConfigError, match=r"lake_root dbfs:/ecomlake is a URI.*set deep.local_dir"):
        cfg.deep_local_dir(databricks)
    assert cfg.deep_local_dir(cfg.load("databricks", overrides=["deep.local_dir=/dbfs/ecomlake/deep"])) == \
        "/dbfs/ecomlake/deep"
    assert cfg.deep_local_dir(cfg.load("cluster", overrides=["deep.local_dir=file:///nfs/deep"])) == "/nfs/deep"
    for uri in ("s3a://bucket/deep", "dbfs:/deep", "abfss://c@a.dfs.core.windows.net/deep"):
        with pytest.raises(ConfigError, match=rf"deep.local_dir must be a local or FUSE path.*{uri}"):
            cfg.deep_local_dir(cfg.load("cluster", overrides=[f"deep.local_dir={uri}"]))


def test_an_installed_wheel_reads_its_packaged_conf_and_anchors_paths_at_the_working_directory(
        tmp_path, monkeypatch):
    packaged = tmp_path / "site-packages" / "ecomlake" / "conf"
    packaged.mkdir(parents=True)
    (packaged / "local.yaml").write_text("env: local\nlake_root: my-lake\nsessionize:\n  gap_minutes: 40\n")
    monkeypatch.setattr(cfg, "checkout_root", lambda: None)
    monkeypatch.setattr(cfg, "PACKAGED_CONF", packaged)
    monkeypatch.chdir(tmp_path)
    config = cfg.load("local")
    assert config["sessionize"]["gap_minutes"] == 40
    assert config["lake_root"] == str(tmp_path / "my-lake")
