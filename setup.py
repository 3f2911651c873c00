from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="hf_cakd",
    version="0.1.0",
    description="Cross-architecture knowledge distillation (FBT: Fuse Before Transfer) for Hugging Face vision models",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    packages=find_packages(include=["hf_cakd", "hf_cakd.*"]),
    package_data={"hf_cakd": ["model_cards/*.jinja"]},
    entry_points={"console_scripts": ["hf-cakd = hf_cakd.cli:main"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.6,<3",
        "torchvision>=0.19",
        "transformers>=5.0,<6",
        "datasets>=3.0",
        "accelerate>=1.0",
        "timm>=1.0.15",
        "huggingface_hub>=1.0",
        "Pillow>=10",
        "requests>=2.28",
        "Jinja2>=3.1",
        "numpy>=1.24",
    ],
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "hypothesis>=6.100", "matplotlib>=3.8"],
    },
)
