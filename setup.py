from setuptools import find_packages, setup

setup(
    name="cimnas-jax",
    version="0.1.0",
    description="Joint neural-architecture, quantization and compute-in-memory accelerator search in JAX",
    packages=find_packages(include=["cimnas_jax", "cimnas_jax.*"]),
    package_data={"cimnas_jax": ["hw/tech/*.json", "assets/**/*"]},
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10,<0.12", "flax>=0.12,<0.13", "optax>=0.2.8,<0.3", "orbax-checkpoint>=0.11",
        "chex>=0.1.90", "absl-py>=2.1", "numpy>=1.26", "matplotlib>=3.8",
    ],
    extras_require={"bench": ["pymoo>=0.6.1"], "test": ["pytest>=8", "pymoo>=0.6.1", "psutil"],
                    # the dask executor of CiMLoop layer evaluations (optional; see requirements-dask.txt)
                    "dask": ["dask[distributed]>=2024.1"]},
    entry_points={"console_scripts": ["cimnas-jax=cimnas_jax.cli:main"]},
)
