# The two commands a user needs (both set up the environment first, idempotently):
#   make pipeline   run the main job on the embedded default (local Spark, ./lakehouse, generated data)
#   make test       run the test suite (every tier; `make test-unit` runs the fast one)
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ecomlake-env-$(shell cat constraints.txt setup.py scripts/setup_env.sh | sha1sum | cut -c1-12)
export SPARK_LOCAL_IP ?= 127.0.0.1

WHEEL_DIR ?= dist

.PHONY: search regional monitor monitor-quiet bench-monitor release bench-release graph cold-start risk-hidden images bench-images wheel test-slow cluster-test airflow-env airflow-check spark4-env spark4-test env pipeline ml deep movielens analytics report-screenshot test test-unit bench-etl bench-ml bench-deep bench-daily crash-test clean-lake
# The cutoff the models train on (labels need 14 days after it) and the date they score.
TRAIN_AS_OF ?= 2019-11-17
SCORE_AS_OF ?= 2019-12-01

env: $(STAMP)

$(STAMP): constraints.txt setup.py scripts/setup_env.sh
	bash scripts/setup_env.sh $(VENV)
	touch $@

pipeline: env
	./spark-submit.sh pipeline $(ARGS)

# Features -> baselines -> scores on the lake that `make pipeline` built. The forecasters are
# trained again as of the scoring date: sales need no label horizon, so its model and its
# backtest include the latest weeks before the forecasts.
ml: env
	./spark-submit.sh features --as-of $(TRAIN_AS_OF) $(ARGS)
	./spark-submit.sh train all --as-of $(TRAIN_AS_OF) $(ARGS)
	./spark-submit.sh features --as-of $(SCORE_AS_OF) $(ARGS)
	./spark-submit.sh train forecast --as-of $(SCORE_AS_OF) $(ARGS)
	./spark-submit.sh score --as-of $(SCORE_AS_OF) $(ARGS)
	./spark-submit.sh score --as-of $(SCORE_AS_OF) --task two_stage $(ARGS)

# The deep models through Petastorm + Horovod (2 workers here), after `make ml`.
deep: env
	./spark-submit.sh train_deep wide_deep --as-of $(TRAIN_AS_OF) --num-proc 2 $(ARGS)
	./spark-submit.sh train_deep session_gru --as-of $(TRAIN_AS_OF) --num-proc 2 $(ARGS)
	./spark-submit.sh train_deep session_attention --as-of $(TRAIN_AS_OF) --num-proc 2 $(ARGS)
	./spark-submit.sh score --as-of $(SCORE_AS_OF) --task next_item $(ARGS)
	./spark-submit.sh train_deep lstm_forecaster --as-of $(TRAIN_AS_OF) --num-proc 2 --history-days 14 $(ARGS)

# MovieLens-100k with the Microsoft Recommenders benchmark protocol, and as a next-item task
# (leave-last-out by time) (README tables).
MOVIELENS_ALS_GRID = --conf 'train.als_ranks=[16,64]' --conf 'train.als_reg_params=[0.01,0.1]' \
    --conf 'train.als_alphas=[1,10,40]' --conf train.als_max_iter=15
MOVIELENS_ATTENTION = --epochs 6
movielens: env
	./spark-submit.sh ingest --source movielens100k $(ARGS)
	./spark-submit.sh train movielens $(MOVIELENS_ALS_GRID) $(ARGS)
	./spark-submit.sh train movielens_sequential $(MOVIELENS_ALS_GRID) $(ARGS)
	./spark-submit.sh train_deep movielens_attention --num-proc 2 $(MOVIELENS_ATTENTION) $(ARGS)

# Real public data (installed by `make env`) + customer value, reviews, risk, pricing and the report,
# after `make ml` (the report also uses the generated lake's gold tables).
analytics: env
	./spark-submit.sh ingest --source cdnow $(ARGS)
	./spark-submit.sh ingest --source clothing_reviews $(ARGS)
	./spark-submit.sh ingest --source dominicks_oj $(ARGS)
	./spark-submit.sh ingest --source dominicks_stores $(ARGS)
	./spark-submit.sh clv --orders cdnow $(ARGS)
	./spark-submit.sh sentiment $(ARGS)
	./spark-submit.sh intents $(ARGS)
	./spark-submit.sh train_deep review_text --num-proc 2 --epochs 6 $(ARGS)
	./spark-submit.sh risk --as-of $(SCORE_AS_OF) $(ARGS)
	./spark-submit.sh pricing --as-of $(SCORE_AS_OF) $(ARGS)
	./spark-submit.sh report --as-of $(SCORE_AS_OF) $(ARGS)

# Product images (Fashion-MNIST from Debian's dataset-fashion-mnist, unpacked by make env): a CNN
# through Petastorm + Horovod (2 workers), scored on the official 10,000-image test split.
IMAGE_CNN_ARGS ?= --num-proc 2 --epochs 20 --batch-size 128
images: env
	./spark-submit.sh ingest --source fashion_mnist $(ARGS)
	./spark-submit.sh train_deep image_cnn $(IMAGE_CNN_ARGS) $(ARGS)

bench-images: env
	$(PY) benchmarks/images.py $(ARGS)

# Cold-start products: a lake of its own, generated with new arrivals (20 % of each category's
# products arrive in the last 14 days), users who keep to a style in apparel (80 % of their apparel
# views) and a Fashion-MNIST picture per apparel product; the image CNN trained there (fewer epochs
# than `make images`: its embeddings, not its accuracy, are what cold_start uses), then cold_start.
COLD_START_DIR ?= lakehouse-cold-start
COLD_START_ARGS = --lake $(COLD_START_DIR)/lake --conf generate.output=$(COLD_START_DIR)/data \
    --conf generate.new_product_fraction=0.2 --conf generate.style_affinity=0.8 --conf generate.product_images=true
COLD_START_CNN_ARGS ?= --num-proc 2 --epochs 4 --batch-size 128
cold-start: env
	./spark-submit.sh pipeline $(COLD_START_ARGS) $(ARGS)
	./spark-submit.sh ingest --source fashion_mnist $(COLD_START_ARGS) $(ARGS)
	./spark-submit.sh train_deep image_cnn $(COLD_START_CNN_ARGS) $(COLD_START_ARGS) $(ARGS)
	./spark-submit.sh cold_start --as-of $(TRAIN_AS_OF) $(COLD_START_ARGS) $(ARGS)

# Item graph: a lake of its own, generated with planted item relations (substitutes, complements
# bought within days of the main product, category transitions), then the graph job, measured
# against them.
GRAPH_DIR ?= lakehouse-graph
GRAPH_ARGS = --lake $(GRAPH_DIR)/lake --conf generate.output=$(GRAPH_DIR)/data --conf generate.item_relations=true
graph: env
	./spark-submit.sh pipeline $(GRAPH_ARGS) $(ARGS)
	./spark-submit.sh graph --as-of $(TRAIN_AS_OF) $(GRAPH_ARGS) $(ARGS)

# Product search: a lake of its own whose generated data has a search log (generate.searches: queries
# from what users want, the shop's lexical results, clicks with a planted position bias and the true
# relevance), then the search job (rankers on raw and on propensity-weighted clicks, nDCG@10 against
# the planted relevance) and one query answered for a person to read.
SEARCH_DIR ?= lakehouse-search
SEARCH_ARGS = --lake $(SEARCH_DIR)/lake --conf generate.output=$(SEARCH_DIR)/data --conf generate.searches=30000
SEARCH_QUERY ?= cheap samsung phone
search: env
	./spark-submit.sh pipeline $(SEARCH_ARGS) $(ARGS)
	./spark-submit.sh search --as-of $(TRAIN_AS_OF) $(SEARCH_ARGS) $(ARGS)
	./spark-submit.sh search --query "$(SEARCH_QUERY)" --user-id 512000141 $(SEARCH_ARGS) $(ARGS)

# Fraud that hides (account takeovers, slow scrapers) among legitimate bulk buyers that trip the
# rules: a lake of its own, generated with 3 % such users (1 % of each kind), then `risk`.
HIDDEN_FRAUD_DIR ?= lakehouse-hidden-fraud
HIDDEN_FRAUD_ARGS = --lake $(HIDDEN_FRAUD_DIR)/lake --conf generate.output=$(HIDDEN_FRAUD_DIR)/data \
    --conf generate.hidden_fraud_fraction=0.03
risk-hidden: env
	./spark-submit.sh pipeline $(HIDDEN_FRAUD_ARGS) $(ARGS)
	./spark-submit.sh risk --as-of $(SCORE_AS_OF) $(HIDDEN_FRAUD_ARGS) $(ARGS)

# A PNG of the report as a browser shows it (needs Debian's chromium: apt-get install chromium).
report-screenshot:
	chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
	    --no-first-run --disable-sync --hide-scrollbars --user-data-dir=$$(mktemp -d) --window-size=1100,9000 \
	    --screenshot=lakehouse/reports/report.png file://$(CURDIR)/lakehouse/reports/report.html

test: env
	$(VENV)/bin/python -m pytest tests $(PYTEST_ARGS)

# The fast tier: in-process tests on hand-made data (tiers are registered in pytest.ini).
test-unit: env
	$(VENV)/bin/python -m pytest tests -m unit $(PYTEST_ARGS)

# A differentially private release of the daily funnel from the lake `make pipeline` built (the
# week before SCORE_AS_OF, epsilon release.epsilon = 1); its accuracy against epsilon, measured on
# a 200k-event lake of its own (README table).
# Regions (issue 16 section 1): a lake of its own whose generated data has a customer master
# (generate.regions: region, city, coordinates) and planted regional differences (a weekend-heavy
# region, a regional promotion week, a more price-sensitive region), the ETL, `regional` (demand,
# alerts, price response, reconciled forecasts), a differentially private regional-demand release
# and the report (lakehouse-regional/lake/reports/report.html: its "Demand by region" section).
REGIONAL_DIR ?= lakehouse-regional
REGIONAL_ARGS = --lake $(REGIONAL_DIR)/lake --conf generate.output=$(REGIONAL_DIR)/data --conf generate.regions=true
regional: env
	./spark-submit.sh pipeline $(REGIONAL_ARGS) $(ARGS)
	./spark-submit.sh regional --as-of $(SCORE_AS_OF) $(REGIONAL_ARGS) $(ARGS)
	./spark-submit.sh release regional_demand --as-of $(SCORE_AS_OF) $(REGIONAL_ARGS) $(ARGS)
	./spark-submit.sh report $(REGIONAL_ARGS) $(ARGS)

# Monitoring (issue 16 section 2): a lake of its own with a planted bot surge (2019-11-07..09) and
# price shock (headphones x1.4, 2019-11-19..23) (generate.change_points); the ETL; a propensity
# model trained as of 2019-11-03 and scored then and on 11-17 (whose labels are in by 12-01); then
# `monitor` over every day that has 14 days of history, 2019-10-15 .. 11-30, measured against the
# planted changes. `monitor-quiet` runs the same monitor on the lake of `make pipeline` (nothing
# planted: every alert there is a false alarm). Both pass monitor.exit_on_alert=false (a scheduler
# wants exit status 4; a demo wants to go on).
MONITOR_DIR ?= lakehouse-monitor
MONITOR_ARGS = --lake $(MONITOR_DIR)/lake --conf generate.output=$(MONITOR_DIR)/data --conf generate.change_points=true
MONITOR_TRAIN_AS_OF ?= 2019-11-03
MONITOR_SCORE_AS_OF ?= 2019-11-17
MONITOR_DAYS ?= 47
monitor: env
	./spark-submit.sh pipeline $(MONITOR_ARGS) $(ARGS)
	./spark-submit.sh features --as-of $(MONITOR_TRAIN_AS_OF) $(MONITOR_ARGS) $(ARGS)
	./spark-submit.sh train propensity --as-of $(MONITOR_TRAIN_AS_OF) $(MONITOR_ARGS) $(ARGS)
	./spark-submit.sh score --task propensity --as-of $(MONITOR_TRAIN_AS_OF) $(MONITOR_ARGS) $(ARGS)
	./spark-submit.sh features --as-of $(MONITOR_SCORE_AS_OF) $(MONITOR_ARGS) $(ARGS)
	./spark-submit.sh score --task propensity --as-of $(MONITOR_SCORE_AS_OF) $(MONITOR_ARGS) $(ARGS)
	./spark-submit.sh monitor --as-of $(SCORE_AS_OF) --days $(MONITOR_DAYS) --conf monitor.exit_on_alert=false \
	    $(MONITOR_ARGS) $(ARGS)

monitor-quiet: env
	./spark-submit.sh pipeline $(ARGS)
	./spark-submit.sh monitor --as-of $(SCORE_AS_OF) --days $(MONITOR_DAYS) --conf monitor.exit_on_alert=false $(ARGS)

# The alerts of both monitor runs against planted truth at several z thresholds (after the two above).
bench-monitor: env
	$(PY) benchmarks/monitor.py $(ARGS)

release: env
	./spark-submit.sh release daily_funnel --as-of $(SCORE_AS_OF) $(ARGS)

bench-release: env
	$(PY) benchmarks/release.py $(ARGS)
	$(PY) benchmarks/release.py --regional $(ARGS)

bench-etl: env
	$(PY) benchmarks/etl.py $(ARGS)

bench-ml: env
	$(PY) benchmarks/ml.py $(ARGS)

bench-deep: env
	$(PY) benchmarks/deep.py $(ARGS)

# 30 daily files run one day at a time: incremental vs full refresh, lake files and bytes (README table).
bench-daily: env
	$(PY) benchmarks/daily.py $(ARGS)

# kill -9 after each Delta commit of every daily job, re-run, same tables (tests/test_crash.py does two jobs).
crash-test: env
	$(PY) benchmarks/crash.py $(ARGS)

# The installable wheel (dist/ecomlake-<version>-py3-none-any.whl): `pip install` it anywhere that has
# the stack (constraints.txt); it carries conf/*.yaml and the `ecomlake` / `ecomlake-<job>` commands.
wheel: env
	rm -rf build
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w $(WHEEL_DIR) .
	@ls $(WHEEL_DIR)/ecomlake-*.whl

# The deep models trained end to end on the generated lake beyond CI's smoke tests (session GRU,
# LSTM forecaster, job-level --resume): ~2 min more; run before resolving an issue.
test-slow: env
	$(VENV)/bin/python -m pytest tests -m slow $(PYTEST_ARGS)

# A Spark standalone master + 2 workers on 127.0.0.1: pipeline, features, train propensity and score
# through ./spark-submit.sh --env cluster, compared with a local run; prints both wall times.
cluster-test: env
	$(PY) -m pytest tests/test_cluster.py -m cluster -s $(PYTEST_ARGS)

# Airflow (its own cached virtualenv, outside the pinned stack) loads dags/ with its DagBag.
airflow-env:
	bash scripts/airflow_env.sh

# The ETL and Spark ML tests on PySpark 4.2 + delta-spark 4.4 (constraints-spark4.txt): a second,
# cached virtualenv (no TensorFlow/Horovod/Petastorm: the deep path stays on Spark 3.5).
SPARK4_TESTS ?= tests/test_config.py tests/test_generate.py tests/test_ingest.py tests/test_clean.py \
    tests/test_sessionize.py tests/test_bad_input.py tests/test_bad_files.py tests/test_daily.py \
    tests/test_maintain.py tests/test_forget.py tests/test_pipeline.py tests/test_logs.py \
    tests/test_features.py tests/test_evaluation.py tests/test_ml_pipeline.py tests/test_recommend.py \
    tests/test_clv.py tests/test_report_and_pricing.py
spark4-env:
	bash scripts/spark4_env.sh

spark4-test:
	py=$$(bash scripts/spark4_env.sh) && PYTHONPATH=lib:. $$py -m pytest $(SPARK4_TESTS) \
	    -m "not horovod and not notebook and not subprocess and not cluster and not slow" $(PYTEST_ARGS)

airflow-check: env
	$(PY) -m pytest tests/test_schedulers.py -k airflow $(PYTEST_ARGS)

clean-lake:
	rm -rf lakehouse data
