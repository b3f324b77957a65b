"""A small nowcasting pipeline over generated weather: no network needed.

Each stage is a plain function; ``get_run_context()`` gives the run's config.
"""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

from flowstage import get_run_context

_NAMES = [
    "Amsterdam",
    "Berlin",
    "Cairo",
    "Denver",
    "Edinburgh",
    "Fukuoka",
    "Geneva",
    "Hanoi",
    "Istanbul",
    "Jakarta",
    "Kyiv",
    "Lima",
    "Madrid",
    "Nairobi",
    "Oslo",
    "Perth",
    "Quito",
    "Riga",
    "Santiago",
    "Tunis",
]


def create_city_list() -> list[dict[str, Any]]:
    """Creates the city list the next stage maps over, from the run config."""
    data_config = get_run_context().config.get("data_config", {})
    count = int(data_config.get("n_cities", 20))
    rng = random.Random(42)
    cities = []
    for i in range(count):
        name = _NAMES[i % len(_NAMES)] + ("" if i < len(_NAMES) else f"-{i // len(_NAMES)}")
        cities.append(
            {
                "city": name,
                "lat": round(rng.uniform(-60, 70), 2),
                "long": round(rng.uniform(-180, 180), 2),
            }
        )
    return cities


def fetch_city_data(city_dict: dict[str, Any]) -> dict[str, Any]:
    """Generates hourly temperatures for one city (stands in for a weather API)."""
    hours = int(get_run_context().config.get("data_config", {}).get("hours", 168))
    rng = random.Random(city_dict["city"])
    base = 25 - abs(city_dict["lat"]) * 0.4
    temps = [base + 8 * math.sin(2 * math.pi * h / 24) + rng.gauss(0, 1.5) for h in range(hours)]
    return {**city_dict, "temperatures": temps}


def process_city_data(city_data: dict[str, Any]) -> dict[str, Any]:
    """Turns the raw series into features."""
    temps = city_data["temperatures"]
    day = temps[-24:]
    return {
        "city": city_data["city"],
        "mean_temp": round(statistics.fmean(temps), 2),
        "max_temp": round(max(temps), 2),
        "last_day_range": round(max(day) - min(day), 2),
        "trend": round(statistics.fmean(temps[-24:]) - statistics.fmean(temps[:24]), 3),
    }


def summarize(features: list[dict[str, Any]]) -> dict[str, Any]:
    """The warmest cities and the study's name."""
    warmest = sorted(features, key=lambda f: f["mean_temp"], reverse=True)[:5]
    return {
        "study": get_run_context().config.get("study_identifier", "unnamed"),
        "cities": len(features),
        "warmest": [{"city": f["city"], "mean_temp": f["mean_temp"]} for f in warmest],
    }
