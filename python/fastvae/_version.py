"""The release of fastvae: one definition, read by the package and its build (pyproject.toml)."""
__version__ = "0.1.0"
