"""Stages as a Flowdapt plugin writes them: only ``flowdapt`` imports."""

import json

from flowdapt.builtins import utils
from flowdapt.compute import object_store
from flowdapt.compute.artifacts import get_artifact
from flowdapt.compute.artifacts.misc import json_from_artifact, json_to_artifact
from flowdapt.compute.resources.workflow.context import get_run_context
from flowdapt.lib.errors import ResourceNotFoundError
from flowdapt.lib.logger import get_logger

logger = get_logger(__name__)


def text_to_artifact():
    def _(artifact, value):
        artifact["value_type"] = "numbers"
        artifact.new_file("numbers.txt").write(",".join(str(v) for v in value))

    return _


def text_from_artifact():
    def _(artifact):
        return [int(v) for v in artifact.get_file("numbers.txt").read().decode().split(",")]

    return _


def create_city_list():
    config = get_run_context().config
    study = config["study_identifier"]
    try:
        cities = object_store.get(
            "cities",
            artifact_only=True,
            load_artifact_hook=json_from_artifact(),
            namespace=study,
        )
        logger.info("Using existing city list", count=len(cities))
    except FileNotFoundError:
        logger.info("No city list yet, creating it")
        cities = [{"city": name} for name in config["data_config"]["cities"]]
        object_store.put(
            "cities",
            cities,
            artifact_only=True,
            save_artifact_hook=json_to_artifact(),
            namespace=study,
        )
    return cities


def fetch_city(row):
    config = get_run_context().config
    name = utils.artifact_name_from_dict({"city": row["city"]})
    try:
        values = object_store.get(
            f"{name}_raw",
            artifact_only=True,
            load_artifact_hook=text_from_artifact(),
            namespace=config["study_identifier"],
        )
        downloaded = False
    except FileNotFoundError:
        values = [len(row["city"]) * i for i in range(config["data_config"]["n"])]
        object_store.put(
            f"{name}_raw",
            values,
            artifact_only=True,
            save_artifact_hook=text_to_artifact(),
            namespace=config["study_identifier"],
        )
        downloaded = True
    object_store.put(f"{name}_features", values, namespace=config["study_identifier"])
    return {"name": name, "downloaded": downloaded}


def summarize(fetched):
    context = get_run_context()
    config = context.config
    totals = {}
    for item in fetched:
        try:
            values = object_store.get(
                f"{item['name']}_features", namespace=config["study_identifier"]
            )
        except ResourceNotFoundError:
            continue
        totals[item["name"]] = sum(values)
    artifact = get_artifact("summary", namespace=config["study_identifier"], create=True)
    with artifact.transaction():
        artifact.clear()
        artifact.new_file("summary.json").write(json.dumps({"config": config, "totals": totals}))
    logger.info("Summarized", run=context.run.name, cities=len(totals))
    return totals


def shout(key):
    return key.upper()


def report(totals, keys, fetched):
    summary = get_artifact("summary", namespace=get_run_context().config["study_identifier"])
    stored = json.loads(summary.get_file("summary.json").read())
    return {
        "totals": totals,
        "keys": keys,
        "downloaded": sum(1 for f in fetched if f["downloaded"]),
        "stored_totals": stored["totals"],
        "empty": summary.is_empty,
    }
