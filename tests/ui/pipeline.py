"""The tiny pipeline whose run the dashboard's tests show: two additions."""

from kfp import dsl


@dsl.component
def add(a: int, b: int) -> int:
    return a + b


@dsl.pipeline(name="ui-adder")
def adder(x: int = 1) -> int:
    first = add(a=x, b=2)
    return add(a=first.output, b=3).output
