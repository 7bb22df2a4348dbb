"""Forecasting: the model (model.py) that the forecast jobs run; no I/O here."""

from tenant_service.forecasting.model import (
    ForecastConfig,
    ForecastError,
    Series,
    forecast,
    preload,
)

__all__ = ["ForecastConfig", "ForecastError", "Series", "forecast", "preload"]
