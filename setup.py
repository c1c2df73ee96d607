"""ecomlake: PySpark + Delta Lake batch jobs for e-commerce analytics.

Versions are not pinned here on purpose: constraints.txt is the one place that pins the stack
(see docs/STACK.md). Install the verified set with `make env`, or
`pip install -c constraints.txt -e '.[all]'`.
"""
from setuptools import find_packages, setup

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
    install_requires=["pyspark", "delta-spark", "pyyaml", "numpy", "pandas", "pyarrow"],
    extras_require={
        # The deep-model path (Horovod is built separately by `make env`: it needs build flags).
        "deep": ["tensorflow-cpu", "petastorm"],
        "bench": ["duckdb", "psutil", "implicit"],
        "dev": ["pytest", "duckdb", "psutil"],
        # Customer value, reviews, pricing and the report (issue 5).
        "analytics": ["scipy", "matplotlib", "rdata", "safetensors", "threadpoolctl"],
        "all": ["tensorflow-cpu", "petastorm", "duckdb", "psutil", "pytest", "scipy", "scikit-learn",
                "implicit", "matplotlib", "rdata", "safetensors", "threadpoolctl"],
    },
)
