"""Coordinate-ascent variational inference for the Bayesian earthquake mixture (DD2434 assignment 1B)."""
from .catalogue import Catalogue, write_catalogue
from .data import load_catalog, sample_earthquakes
from .mixture import ConvergenceWarning, EarthquakeMixture, NotFittedError

__all__ = ["EarthquakeMixture", "sample_earthquakes", "load_catalog", "ConvergenceWarning", "NotFittedError",
           "Catalogue", "write_catalogue"]
