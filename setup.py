"""ecomlake: PySpark + Delta Lake batch jobs for e-commerce analytics.

Versions are not pinned here on purpose: constraints.txt is the one place that pins the stack
(see docs/STACK.md). Install the verified set with `make env`, or
`pip install -c constraints.txt -e '.[all]'`.
"""
import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# The jobs, one console command each (`ecomlake-ingest ...`, what Databricks' python_wheel_task
# and Airflow call), beside `ecomlake <job> ...` (the spark-submit front end of ./spark-submit.sh).
HERE = Path(__file__).resolve().parent
JOBS = sorted(p.stem for p in (HERE / "lib" / "ecomlake" / "jobs").glob("*.py") if p.stem != "__init__")


class BuildPyWithConf(build_py):
    """Copies conf/*.yaml and conf/log4j2.properties into the package (ecomlake/conf/), so that an
    installed wheel finds its configuration without a checkout. conf/ stays the one source."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's conf/
            return
        target = Path(self.build_lib) / "ecomlake" / "conf"
        target.mkdir(parents=True, exist_ok=True)
        for path in sorted((HERE / "conf").iterdir()):
            if path.suffix in (".yaml", ".properties"):
                shutil.copy2(path, target / path.name)


setup(
    name="ecomlake",
    version="0.1.0",
    description="Distributed batch jobs that turn e-commerce clickstream into analytics and models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    package_data={"ecomlake": ["data/*.csv"]},  # the hand-labelled review test set (intents)
    cmdclass={"build_py": BuildPyWithConf},
    entry_points={"console_scripts": ["ecomlake=ecomlake.submit:main",
                                      *(f"ecomlake-{job.replace('_', '-')}=ecomlake.entry_points:{job}"
                                        for job in JOBS)]},
    # xgboost-cpu: the two-stage recommender's ranker (train recommend, score --task two_stage)
    install_requires=["pyspark", "delta-spark", "pyyaml", "numpy", "pandas", "pyarrow", "xgboost-cpu"],
    extras_require={
        # The deep-model path (Horovod is built separately by `make env`: it needs build flags).
        "deep": ["tensorflow-cpu", "petastorm"],
        # opencv: only for benchmarks/images.py (Petastorm's CompressedImageCodec decodes with cv2).
        "bench": ["duckdb", "psutil", "implicit", "opencv-python-headless"],
        "dev": ["pytest", "duckdb", "psutil"],
        # Customer value, reviews, pricing and the report (issue 5).
        "analytics": ["scipy", "matplotlib", "rdata", "safetensors", "threadpoolctl"],
        # Differentially private releases (job `release`).
        "privacy": ["pipeline-dp"],
        "all": ["tensorflow-cpu", "petastorm", "duckdb", "psutil", "pytest", "scipy", "scikit-learn",
                "implicit", "matplotlib", "rdata", "safetensors", "threadpoolctl", "opencv-python-headless",
                "pipeline-dp"],
    },
)
