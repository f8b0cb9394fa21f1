"""The pipelines the runs pages' tests run: one with a parameter of each KFP type that
logs Metrics, and a quick one for lists."""

from kfp import dsl
from kfp.dsl import Metrics, Output


@dsl.component
def score(
    label: str,
    count: int,
    rate: float,
    flag: bool,
    items: list,
    conf: dict,
    metrics: Output[Metrics],
) -> None:
    metrics.log_metric("accuracy", rate * count / (count + 1))
    metrics.log_metric("items", float(len(items) + len(conf) + (1 if flag else 0)))


@dsl.pipeline(name="ui-typed")
def typed(
    label: str = "a",
    count: int = 3,
    rate: float = 0.5,
    flag: bool = True,
    items: list = [1, 2],  # noqa: B006 (a pipeline's default)
    conf: dict = {"k": "v"},  # noqa: B006
) -> None:
    score(label=label, count=count, rate=rate, flag=flag, items=items, conf=conf)


@dsl.component
def echo(word: str) -> str:
    return word


@dsl.pipeline(name="ui-quick")
def quick(word: str = "hi") -> None:
    echo(word=word)
